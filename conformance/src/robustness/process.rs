//! Clients in processes of their own, as services are: the runner's test binary runs itself
//! again with the test [`CHILD_TEST`] selected and the role in `KV_ROBUSTNESS_CHILD`
//! (`traffic` or `lock`); the child opens its own store and reports each operation as a line on
//! stdout (`KVR ...`), its times on the machine's monotonic clock counted from the runner's
//! start, so the runner merges them into one history. Traffic children announce each
//! operation before they invoke it: when the nemesis kills one (SIGKILL), the operation it
//! was in becomes an unknown outcome. Lock children are paused (SIGSTOP) past their TTL and
//! resumed: the first thing they do is check `is_lost()`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv_core::Store;
use nix::sys::signal::{Signal, kill};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;
use tokio::io::AsyncBufReadExt;

use super::history::{Call, Op, Outcome};
use super::lock::LockLog;
use super::traffic::Recorder;

/// The name of the test that every robustness test binary has (the `robustness_tests!`
/// macro writes it) and that only does something in a child.
pub const CHILD_TEST: &str = "robustness_client_process";

/// The start of each line a child reports on.
const MARK: &str = "KVR ";

/// Now on the monotonic clock (shared by every process of the machine), in ns.
fn monotonic() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map_or(Duration::ZERO, Duration::from)
        .as_nanos() as u64
}

/// An `Instant` and the monotonic clock's reading at the same moment, to within the best of a
/// few samples (a process preempted between two clock reads would otherwise shift every
/// time it reports, and a read could seem to precede a write it saw).
fn paired() -> (Instant, u64) {
    (0..16)
        .map(|_| {
            let before = monotonic();
            let instant = Instant::now();
            let after = monotonic();
            (after - before, instant, before + (after - before) / 2)
        })
        .min_by_key(|(gap, _, _)| *gap)
        .map(|(_, instant, at)| (instant, at))
        .expect("samples")
}

/// In a child: runs the role `KV_ROBUSTNESS_CHILD` names against a store opened with `open`
/// and returns when its deadline passes; in any other process, returns at once.
pub async fn child<S, F, Fut>(open: F)
where
    S: Store + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let Ok(role) = std::env::var("KV_ROBUSTNESS_CHILD") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let number = |name: &str| {
        var(name)
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{name} is not a number"))
    };
    let (client, seed) = (
        number("KV_ROBUSTNESS_CLIENT") as usize,
        number("KV_ROBUSTNESS_CHILD_SEED"),
    );
    let (began_at, until_at) = (number("KV_ROBUSTNESS_BEGAN"), number("KV_ROBUSTNESS_UNTIL"));
    let (now, now_at) = paired();
    let began = now
        .checked_sub(Duration::from_nanos(now_at.saturating_sub(began_at)))
        .unwrap_or(now);
    let deadline = began + Duration::from_nanos(until_at.saturating_sub(began_at));
    let store: Arc<dyn Store> = Arc::new(
        open(var("KV_ROBUSTNESS_URL"))
            .await
            .unwrap_or_else(|e| panic!("a client process could not open its store: {e}")),
    );
    match role.as_str() {
        "traffic" => {
            let keys = var("KV_ROBUSTNESS_KEYS")
                .split(',')
                .map(str::to_owned)
                .collect();
            let lines: Arc<dyn Recorder> = Arc::new(Lines);
            super::traffic::client(client, store.clone(), keys, seed, began, deadline, lines).await
        }
        "lock" => {
            let lines: Arc<dyn LockLog> = Arc::new(Lines);
            super::lock::client(client, store.clone(), seed, began, deadline, lines).await
        }
        other => panic!("unknown client process role {other}"),
    }
    let _ = store.close().await;
}

/// A child's reports: one line each, flushed at once (stdout is line-buffered).
struct Lines;

impl Recorder for Lines {
    fn invoke(&self, client: usize, key: &str, call: &Call, start: u64) {
        let pending = Op {
            client,
            key: key.to_owned(),
            call: call.clone(),
            outcome: Outcome::Unknown("the client process was killed during the call".into()),
            start,
            end: u64::MAX,
        };
        println!("{MARK}invoke {}", pending.json());
    }

    fn complete(&self, op: Op) {
        println!("{MARK}op {}", op.json());
    }
}

impl LockLog for Lines {
    fn acquired(&self, client: usize, token: u64, at: u64) {
        println!("{MARK}acquired {client} {token} {at}");
    }

    fn held(&self, client: usize, token: u64, at: u64) {
        println!("{MARK}held {client} {token} {at}");
    }
}

/// A client process the runner started.
pub struct Child {
    /// Its role: `traffic` or `lock`.
    pub role: &'static str,
    pid: Option<u32>,
    process: tokio::process::Child,
    reader: tokio::task::JoinHandle<()>,
}

impl Child {
    /// Starts this test binary again as a client process of `role`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        role: &'static str,
        client: usize,
        url: &str,
        keys: &[String],
        seed: u64,
        began: Instant,
        deadline: Instant,
        history: Arc<Mutex<Vec<Op>>>,
        holds: Arc<dyn LockLog>,
    ) -> std::io::Result<Child> {
        let (now, now_at) = paired();
        let began_at = now_at.saturating_sub(now.duration_since(began).as_nanos() as u64);
        let until_at = began_at + deadline.duration_since(began).as_nanos() as u64;
        let mut process = tokio::process::Command::new(std::env::current_exe()?)
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env("KV_ROBUSTNESS_CHILD", role)
            .env("KV_ROBUSTNESS_CLIENT", client.to_string())
            .env("KV_ROBUSTNESS_CHILD_SEED", seed.to_string())
            .env("KV_ROBUSTNESS_BEGAN", began_at.to_string())
            .env("KV_ROBUSTNESS_UNTIL", until_at.to_string())
            .env("KV_ROBUSTNESS_URL", url)
            .env("KV_ROBUSTNESS_KEYS", keys.join(","))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = process.stdout.take().expect("a piped stdout");
        let reader = tokio::spawn(read(stdout, history, holds));
        Ok(Child {
            role,
            pid: process.id(),
            process,
            reader,
        })
    }

    /// SIGKILL, then waits until the process is gone and its last line read.
    pub async fn kill(mut self) {
        let _ = self.process.kill().await;
        let _ = self.reader.await;
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`).
    pub fn pause(&self, stop: bool) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let signal = if stop {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Waits until the process has ended by itself (its deadline) and its lines are read; a
    /// process that does not end within `patience` is killed.
    pub async fn finish(mut self, patience: Duration) {
        self.pause(false);
        if tokio::time::timeout(patience, self.process.wait())
            .await
            .is_err()
        {
            let _ = self.process.kill().await;
        }
        let _ = self.reader.await;
    }
}

/// Reads a child's lines into the history and the holds; an operation announced and never
/// completed (the process was killed) goes in as an unknown outcome.
async fn read(
    stdout: tokio::process::ChildStdout,
    history: Arc<Mutex<Vec<Op>>>,
    holds: Arc<dyn LockLog>,
) {
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut pending: HashMap<(usize, String, u64), Op> = HashMap::new();
    while let Ok(Some(line)) = lines.next_line().await {
        // The first report shares its line with the test harness's "test ... " (no newline).
        let Some(report) = line.find(MARK).map(|at| &line[at + MARK.len()..]) else {
            continue;
        };
        let (kind, rest) = report.split_once(' ').unwrap_or((report, ""));
        match kind {
            "invoke" => {
                if let Some(op) = Op::parse(rest) {
                    pending.insert((op.client, op.key.clone(), op.start), op);
                }
            }
            "op" => {
                if let Some(op) = Op::parse(rest) {
                    pending.remove(&(op.client, op.key.clone(), op.start));
                    history.lock().unwrap_or_else(|p| p.into_inner()).push(op);
                }
            }
            "acquired" | "held" => {
                let numbers: Vec<u64> = rest.split(' ').filter_map(|n| n.parse().ok()).collect();
                if let [client, token, at] = numbers[..] {
                    if kind == "acquired" {
                        holds.acquired(client as usize, token, at);
                    } else {
                        holds.held(client as usize, token, at);
                    }
                }
            }
            _ => {}
        }
    }
    history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(pending.into_values());
}
