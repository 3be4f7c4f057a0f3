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

mod nemesis;
mod runner;

pub mod history;
pub mod lease;
pub mod linearizable;
pub mod list;
pub mod lock;
pub mod process;
pub mod timeline;
pub mod traffic;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv_core::Store;

use crate::proxy::FaultProxy;
use crate::servers::Server;
use history::Op;
use nemesis::Target;
pub use nemesis::{Cluster, NO_PEER_CUTS, Partition, client_faults};
use runner::{drive, hosts, member_views};

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
    /// The nemesis may also kill the server with SIGKILL and restart it on its data (only
    /// for servers that keep every acknowledged write across that).
    pub kills: bool,
    /// The nemesis may pause members (SIGSTOP), briefly and past the TTLs. Off for systems
    /// that promise nothing across a paused primary (Redis Sentinel: a primary frozen and then
    /// woken takes writes until it is demoted).
    pub pauses: bool,
    /// How long (ms) a killed member stays down before its restart.
    pub down_ms: std::ops::Range<u64>,
    /// Also run clients as processes of their own (two doing traffic, one holding the
    /// lock), which the nemesis kills and pauses ([`process`]; the test binary must have the
    /// [`process::CHILD_TEST`] test, as `robustness_tests!` writes it).
    pub processes: bool,
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
            kills: false,
            pauses: true,
            down_ms: 300..1300,
            processes: true,
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
    /// Events the watchers received.
    pub watch_events: usize,
    /// Each watcher's events, segments and end.
    pub watchers: Vec<String>,
    /// Times the lock was acquired.
    pub lock_holds: usize,
    /// Writes made under the lock (each after `is_lost()` said held).
    pub lock_writes: usize,
    /// Leases granted.
    pub leases: usize,
    /// How long the slowest watcher took to deliver the write made after the traffic.
    pub watch_lag: Duration,
    /// Time the checker took.
    pub checked_in: Duration,
}

/// One fault as the nemesis logged it (ns since the run began).
#[derive(Debug, Clone)]
pub struct Fault {
    /// What it was: partition, reset, delay, pause, long pause, kill.
    pub kind: &'static str,
    /// When it began.
    pub start: u64,
    /// When it ended.
    pub end: u64,
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
    run_cluster(
        kind,
        &[server],
        NO_PEER_CUTS,
        &server.url,
        None,
        suffix,
        config,
        open,
    )
    .await
}

/// [`run`] against a cluster: `members` are the servers the nemesis may pause, kill and
/// restart (`leader` tells which one leads, and is picked half the time), and cut off from
/// their peers where `peers` has a [`Partition`] for each (same order: the proxies in front of
/// a member for its peers, or its network namespace's link); `url` is the one
/// clients use (every member, or a client agent), and every `127.0.0.1:port` in it gets a
/// proxy of its own, which the proxied half of the clients go through and the nemesis holds,
/// resets and delays one at a time.
#[allow(clippy::too_many_arguments)]
pub async fn run_cluster<S, F, Fut, P>(
    kind: &str,
    members: &[&Server],
    peers: &[P],
    url: &str,
    leader: Option<&dyn Cluster>,
    suffix: &str,
    config: Config,
    open: F,
) -> Report
where
    S: Store + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
    P: Partition,
{
    let mut proxies = Vec::new();
    let mut proxied = url.to_owned();
    for host in hosts(url) {
        let proxy = FaultProxy::start(host).await.expect("fault proxy");
        proxied = proxied.replace(&host.to_string(), &proxy.addr().to_string());
        proxies.push(proxy);
    }
    assert!(!proxies.is_empty(), "no 127.0.0.1:port in {url}");
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for client in 0..config.clients {
        let base = if client % 2 == 1 { &proxied } else { url };
        let store = open(format!("{base}{suffix}"))
            .await
            .expect("store for a robustness client");
        stores.push(Arc::new(store));
    }
    let target = Target {
        members: members.to_vec(),
        peers: peers.iter().map(|p| p as &dyn Partition).collect(),
        proxies: proxies.iter().collect(),
        leader,
    };
    let children = format!("{url}{suffix}");
    match drive(kind, stores, config, Some(&target), Some(children)).await {
        Ok(report) => report,
        Err(mut failed) => {
            if members.len() > 1 {
                let views = member_views(members, suffix, &open, &failed.state).await;
                failed.add(
                    "the members' own answers where they differ from the final state",
                    views,
                );
            }
            panic!("{}", failed.message)
        }
    }
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
    let target = Target {
        members: Vec::new(),
        peers: Vec::new(),
        proxies: Vec::new(),
        leader: None,
    };
    drive(kind, stores, config, Some(&target), Some(url.to_owned()))
        .await
        .unwrap_or_else(|failed| panic!("{}", failed.message))
}

/// Writes the seed, the history (JSON lines) and the fault log of a failed run; returns where.
fn save(
    kind: &str,
    seed: u64,
    ops: &[Op],
    faults: &[Fault],
    watches: &[watch::WatchLog],
    holds: &[lock::Hold],
    focus: Option<(&str, u64)>,
) -> PathBuf {
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
    let watches: String = watches.iter().map(watch::WatchLog::json).collect();
    let _ = std::fs::write(dir.join("watches.jsonl"), watches);
    let holds: String = holds.iter().map(|h| format!("{h:?}\n")).collect();
    let _ = std::fs::write(dir.join("locks.log"), holds);
    let _ = std::fs::write(
        dir.join("timeline.html"),
        timeline::html(kind, seed, ops, faults, focus),
    );
    dir
}

/// Expands into a backend's robustness tests against a server of its own started by
/// `$launcher`, stores opened by `$open(url)` (url = server URL + `$suffix`, which should set
/// the root and `timeout=1s`): `a_fault_free_history_is_linearizable` and
/// `a_history_under_faults_is_linearizable`, `$seconds` of traffic each; `kills = true` lets
/// the nemesis kill and restart the server (one that keeps what it acknowledged), `processes =
/// (fault-free, under faults)` says which of the two also runs client processes (both by
/// default).
#[macro_export]
macro_rules! robustness_tests {
    ($launcher:expr, $suffix:expr, $seconds:expr, $open:expr) => {
        $crate::robustness_tests!($launcher, $suffix, $seconds, $open, kills = false);
    };
    ($launcher:expr, $suffix:expr, $seconds:expr, $open:expr, kills = $kills:expr) => {
        $crate::robustness_tests!(
            $launcher,
            $suffix,
            $seconds,
            $open,
            kills = $kills,
            processes = (true, true)
        );
    };
    (
        $launcher:expr, $suffix:expr, $seconds:expr, $open:expr,
        kills = $kills:expr, processes = $processes:expr
    ) => {
        /// Does nothing, except in a client process the runner started.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn robustness_client_process() {
            $crate::robustness::process::child($open).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_fault_free_history_is_linearizable() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let mut config = $crate::robustness::Config::from_env($seconds);
            config.faults = false;
            config.processes = $processes.0;
            $crate::robustness::run(kind, &server, $suffix, config, $open).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_history_under_faults_is_linearizable() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let mut config = $crate::robustness::Config::from_env($seconds);
            config.kills = $kills;
            config.processes = $processes.1;
            $crate::robustness::run(kind, &server, $suffix, config, $open).await;
        }
    };
}

/// The self-test's loop: runs under faults (kills included), each against a fresh server of
/// `launcher`'s kind, until one fails; returns the run (from 1) and the start of its report,
/// or `None` if all `runs` passed. The caller has planted a bug (`kv_core::failpoint`).
pub async fn until_caught<S, F, Fut>(
    launcher: &dyn crate::servers::Launcher,
    suffix: &str,
    runs: usize,
    open: F,
) -> Option<(usize, String)>
where
    S: Store + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    use futures::FutureExt as _;
    let kind = launcher.kind();
    for attempt in 1..=runs {
        let server = crate::servers::with_port_retries(|| launcher.start())
            .unwrap_or_else(|e| panic!("no {kind} server for the self-test: {e}"));
        let mut config = Config::from_env(10);
        config.kills = true;
        config.seed = config.seed.wrapping_add(attempt as u64);
        let outcome = std::panic::AssertUnwindSafe(run(kind, &server, suffix, config, &open))
            .catch_unwind()
            .await;
        if let Err(panic) = outcome {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Some((attempt, text.chars().take(1500).collect()));
        }
    }
    None
}
