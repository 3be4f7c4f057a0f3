//! Robustness: random traffic from several long-lived store handles under random faults, every
//! operation recorded with its invocation and return time, and the whole history checked
//! against a model (per-key linearizability of get/put/CAS/delete), as etcd's
//! `tests/robustness` and Jepsen check the systems they test. A scenario proves one fault's
//! one outcome; a checked history proves that whatever happened can be explained.
//!
//! - [`history`]: the records, as JSON lines.
//! - [`linearizable`]: the checker (Wing–Gong search with memoization, a register model that
//!   treats unknown outcomes as "applied at some time after the call, or never" and errors that
//!   say nothing was applied as exactly that).
//! - [`traffic`]: the clients' random operations.
//! - [`run`]: a run against one server: clients (some through a [`FaultProxy`]), a nemesis
//!   that cuts, resets and delays the proxied connections and pauses the server, then the
//!   check. A failed run leaves its seed, history and fault log under
//!   `target/robustness/<backend>-<seed>/`; `KV_ROBUSTNESS_SEED` replays a schedule,
//!   `KV_ROBUSTNESS_SECONDS` lengthens a run.

pub mod history;
pub mod linearizable;
pub mod traffic;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv_core::Store;

use crate::faults::{FaultProxy, server_addr};
use crate::servers::Server;
use history::Op;

/// The shape of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long traffic runs.
    pub duration: Duration,
    /// Store handles, each driven by one client task; every other one goes through the proxy.
    pub clients: usize,
    /// Keys the clients share (fewer keys, more contention).
    pub keys: usize,
    /// Seed of the traffic and fault schedule.
    pub seed: u64,
    /// Inject faults (else a fault-free run: anomalies then are the library's alone).
    pub faults: bool,
}

impl Config {
    /// The default run: `seconds` of traffic (`KV_ROBUSTNESS_SECONDS` overrides), 6 clients
    /// on 3 keys, faults on, the seed from `KV_ROBUSTNESS_SEED` or the clock.
    pub fn from_env(seconds: u64) -> Config {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let seed = env("KV_ROBUSTNESS_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        Config {
            duration: Duration::from_secs(env("KV_ROBUSTNESS_SECONDS").unwrap_or(seconds)),
            clients: 6,
            keys: 3,
            seed,
            faults: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Operations recorded.
    pub ops: usize,
    /// Of which with an unknown outcome.
    pub unknown: usize,
    /// Of which failed saying nothing was applied.
    pub failed: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// Time the checker took.
    pub checked_in: Duration,
}

/// One fault as the nemesis logged it (ns since the run began).
#[derive(Debug, Clone)]
struct Fault {
    kind: &'static str,
    start: u64,
    end: u64,
}

/// Runs traffic against `server` (stores opened with `open(url + suffix)`; the suffix should
/// set a short `timeout`), injects faults, checks the history. Panics with the violation (and
/// where its history was written) if one is found; returns what the run did.
pub async fn run<S, F, Fut>(
    kind: &str,
    server: &Server,
    suffix: &str,
    config: Config,
    open: F,
) -> Report
where
    S: Store + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let target =
        server_addr(&server.url).unwrap_or_else(|| panic!("no 127.0.0.1:port in {}", server.url));
    let proxy = FaultProxy::start(target).await.expect("fault proxy");
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for client in 0..config.clients {
        let base = if client % 2 == 1 {
            proxy.url(&server.url)
        } else {
            server.url.clone()
        };
        let url = format!("{base}{suffix}");
        let store = open(url).await.expect("store for a robustness client");
        stores.push(Arc::new(store));
    }
    drive(kind, stores, config, Some((server, &proxy))).await
}

/// [`run`] for an embedded store (SQLite's file, shared by its handles as by processes): the
/// clients' handles are opened with `open(url)`; no faults yet (no server to cut).
pub async fn run_embedded<S, F, Fut>(kind: &str, url: &str, config: Config, open: F) -> Report
where
    S: Store + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..config.clients {
        let store = open(url.to_owned())
            .await
            .expect("store for a robustness client");
        stores.push(Arc::new(store));
    }
    drive(kind, stores, config, None).await
}

/// Drives the clients over `stores`, with the nemesis when there is a server (and its proxy)
/// and faults are on; then checks, reports, and panics on a violation.
async fn drive(
    kind: &str,
    stores: Vec<Arc<dyn Store>>,
    config: Config,
    faulty: Option<(&Server, &FaultProxy)>,
) -> Report {
    let began = Instant::now();
    let history = Arc::new(Mutex::new(Vec::<Op>::new()));
    let deadline = began + config.duration;
    let keys: Vec<String> = (0..config.keys).map(|k| format!("k{k}")).collect();
    let clients: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(client, store)| {
            tokio::spawn(traffic::client(
                client,
                store.clone(),
                keys.clone(),
                config.seed.wrapping_add(client as u64 * 7919),
                began,
                deadline,
                history.clone(),
            ))
        })
        .collect();
    let faults = match faulty {
        Some((server, proxy)) if config.faults => {
            let log = nemesis(server, proxy, config.seed, began, deadline).await;
            proxy.heal();
            let _ = server.resume();
            log
        }
        _ => {
            tokio::time::sleep_until(deadline.into()).await;
            Vec::new()
        }
    };
    for client in clients {
        client.await.expect("a robustness client panicked");
    }
    for store in &stores {
        let _ = store.close().await;
    }
    let ops = std::mem::take(&mut *history.lock().unwrap_or_else(|p| p.into_inner()));
    let mut report = Report {
        ops: ops.len(),
        unknown: ops
            .iter()
            .filter(|o| matches!(o.outcome, history::Outcome::Unknown(_)))
            .count(),
        failed: ops
            .iter()
            .filter(|o| matches!(o.outcome, history::Outcome::Failed(_)))
            .count(),
        ..Report::default()
    };
    for fault in &faults {
        *report.faults.entry(fault.kind).or_default() += 1;
    }
    let checking = Instant::now();
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    let violations: Vec<_> = by_key
        .into_iter()
        .filter_map(|(key, ops)| linearizable::check_key(key, ops).err())
        .collect();
    report.checked_in = checking.elapsed();
    // Errors must be typed; and with no fault at all, no call may fail saying nothing was
    // applied (a write racing other writers included: giving up is not an answer when nothing
    // is wrong). Timeouts are let pass: a loaded machine may cause them.
    let untyped: Vec<&Op> = ops
        .iter()
        .filter(|o| matches!(&o.outcome, history::Outcome::Unknown(e) if e.starts_with("untyped")))
        .collect();
    let unforced: Vec<&Op> = if faults.is_empty() {
        ops.iter()
            .filter(|o| matches!(o.outcome, history::Outcome::Failed(_)))
            .collect()
    } else {
        Vec::new()
    };
    eprintln!(
        "{kind}: robustness seed {}: {} ops ({} unknown, {} failed), faults {:?}, checked in {:?}",
        config.seed, report.ops, report.unknown, report.failed, report.faults, report.checked_in
    );
    if violations.is_empty() && untyped.is_empty() && unforced.is_empty() {
        return report;
    }
    let dir = save(kind, config.seed, &ops, &faults);
    let mut message = String::new();
    for violation in &violations {
        message.push_str(&format!(
            "\nkey {} is not linearizable: {} of its {} operations could be ordered; no order \
             places\n  {}\nits operations around it:\n",
            violation.key,
            violation.placed,
            violation.ops.len(),
            violation.stuck.as_ref().map_or("?".into(), Op::describe)
        ));
        let around = violation.stuck.as_ref().map_or(0, |s| s.start);
        for op in violation
            .ops
            .iter()
            .filter(|o| {
                o.end >= around.saturating_sub(50_000_000) && o.start <= around + 50_000_000
            })
            .take(40)
        {
            message.push_str(&format!("  {}\n", op.describe()));
        }
    }
    for op in unforced.iter().take(5) {
        let line = format!("\na call failed with no fault injected: {}", op.describe());
        message.push_str(&line);
    }
    for op in untyped.iter().take(5) {
        message.push_str(&format!(
            "\nan untyped error (must be typed): {}",
            op.describe()
        ));
    }
    panic!(
        "{kind}: robustness seed {} failed (replay with KV_ROBUSTNESS_SEED={}); history and \
         faults in {}{message}",
        config.seed,
        config.seed,
        dir.display()
    );
}

/// Injects faults until `deadline`, one at a time with pauses between: the proxied clients'
/// connections held (a partition), reset, or delayed, and the server paused (SIGSTOP) for
/// about a second. Returns the log.
async fn nemesis(
    server: &Server,
    proxy: &FaultProxy,
    seed: u64,
    began: Instant,
    deadline: Instant,
) -> Vec<Fault> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_fa17);
    let mut log = Vec::new();
    let at = || began.elapsed().as_nanos() as u64;
    loop {
        let quiet = Duration::from_millis(rng.u64(500..1500));
        if Instant::now() + quiet + Duration::from_millis(1500) >= deadline {
            break;
        }
        tokio::time::sleep(quiet).await;
        let length = Duration::from_millis(rng.u64(300..1300));
        let start = at();
        let kind = match rng.u8(0..4) {
            0 => {
                proxy.hold();
                tokio::time::sleep(length).await;
                proxy.heal();
                "partition"
            }
            1 => {
                proxy.drop_connections();
                "reset"
            }
            2 => {
                proxy.delay(Duration::from_millis(rng.u64(20..200)));
                tokio::time::sleep(length).await;
                proxy.heal();
                "delay"
            }
            _ => {
                if server.pause().is_err() {
                    continue;
                }
                tokio::time::sleep(length).await;
                let _ = server.resume();
                "pause"
            }
        };
        log.push(Fault {
            kind,
            start,
            end: at(),
        });
    }
    tokio::time::sleep_until(deadline.into()).await;
    log
}

/// Writes the seed, the history (JSON lines) and the fault log of a failed run; returns where.
fn save(kind: &str, seed: u64, ops: &[Op], faults: &[Fault]) -> PathBuf {
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR").map(|dir| PathBuf::from(dir).join("../target"))
        })
        .unwrap_or_else(std::env::temp_dir);
    let dir = root.join("robustness").join(format!("{kind}-{seed}"));
    let _ = std::fs::create_dir_all(&dir);
    let mut sorted: Vec<&Op> = ops.iter().collect();
    sorted.sort_by_key(|o| o.start);
    let lines: String = sorted.iter().map(|o| o.json() + "\n").collect();
    let _ = std::fs::write(dir.join("history.jsonl"), lines);
    let log: String = faults
        .iter()
        .map(|f| {
            format!(
                "{} {:.1}..{:.1} ms\n",
                f.kind,
                f.start as f64 / 1e6,
                f.end as f64 / 1e6
            )
        })
        .collect();
    let _ = std::fs::write(dir.join("faults.log"), log);
    let _ = std::fs::write(dir.join("seed"), format!("{seed}\n"));
    dir
}

/// Expands into a backend's robustness tests against a server of its own started by
/// `$launcher`, stores opened by `$open(url)` (url = server URL + `$suffix`, which should set
/// the root and `timeout=1s`): `a_fault_free_history_is_linearizable` and
/// `a_history_under_faults_is_linearizable`, `$seconds` of traffic each.
#[macro_export]
macro_rules! robustness_tests {
    ($launcher:expr, $suffix:expr, $seconds:expr, $open:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_fault_free_history_is_linearizable() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let mut config = $crate::robustness::Config::from_env($seconds);
            config.faults = false;
            $crate::robustness::run(kind, &server, $suffix, config, $open).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_history_under_faults_is_linearizable() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let config = $crate::robustness::Config::from_env($seconds);
            $crate::robustness::run(kind, &server, $suffix, config, $open).await;
        }
    };
}
