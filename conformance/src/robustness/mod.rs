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

/// Waits until a watcher's log says `delivered` or that it ended, or until the liveness bound
/// has passed since `written`.
async fn delivered_within(
    log: &Mutex<watch::WatchLog>,
    written: Instant,
    delivered: impl Fn(&watch::WatchLog) -> bool,
) {
    loop {
        let done = {
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            log.ended.is_some() || delivered(&log)
        };
        if done || written.elapsed() > watch::LIVENESS_BOUND {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every `127.0.0.1:port` in a store URL.
fn hosts(url: &str) -> Vec<std::net::SocketAddr> {
    url.split("127.0.0.1:")
        .skip(1)
        .filter_map(|rest| {
            let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
            port.parse::<u16>()
                .ok()
                .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
        })
        .collect()
}

/// What the nemesis can break.
struct Target<'a> {
    /// Servers it can pause, kill and restart.
    members: Vec<&'a Server>,
    /// How each member is cut off from its peers (empty: members always reach each
    /// other).
    peers: Vec<&'a dyn Partition>,
    /// A proxy per host of the clients' URL.
    proxies: Vec<&'a FaultProxy>,
    /// Which member leads, if that can be asked, and when one may be killed.
    leader: Option<&'a dyn Cluster>,
}

/// What each member holds of every key in `state` whose reading on some member differs from
/// `state` (the final state read through the clients' URL): one line per such key, empty when
/// all members agree with it. Each member is read through a store of its own (with that
/// backend's linearizable read: a member that answers otherwise than the others after the run
/// has diverged).
async fn member_views<S, F, Fut>(
    members: &[&Server],
    suffix: &str,
    open: &F,
    state: &BTreeMap<String, Option<(String, u64)>>,
) -> Vec<String>
where
    S: Store + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let show = |read: &Option<(String, u64)>| match read {
        Some((value, version)) => format!("{value} @ {version}"),
        None => "absent".to_owned(),
    };
    let mut answers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for member in members {
        let url = format!("{}{suffix}", member.url);
        let store = tokio::time::timeout(Duration::from_secs(10), open(url)).await;
        for (key, expected) in state {
            let answer = match &store {
                Ok(Ok(store)) => {
                    match tokio::time::timeout(Duration::from_secs(5), store.get(key)).await {
                        Ok(Ok(pair)) => {
                            let read = pair.map(|p| {
                                (String::from_utf8_lossy(&p.value).into_owned(), p.version)
                            });
                            if &read == expected {
                                "agrees".to_owned()
                            } else {
                                show(&read)
                            }
                        }
                        Ok(Err(e)) => format!("error: {e}"),
                        Err(_) => "no answer in 5 s".to_owned(),
                    }
                }
                Ok(Err(e)) => format!("no store: {e}"),
                Err(_) => "no store in 10 s".to_owned(),
            };
            answers.entry(key).or_default().push(answer);
        }
        if let Ok(Ok(store)) = store {
            let _ = store.close().await;
        }
    }
    answers
        .into_iter()
        .filter(|(_, answers)| answers.iter().any(|a| a != "agrees"))
        .map(|(key, answers)| {
            let each: Vec<String> = answers
                .iter()
                .enumerate()
                .map(|(member, a)| format!("member {member}: {a}"))
                .collect();
            format!(
                "{key} = {} through the clients' URL; {}",
                show(&state[key]),
                each.join("; ")
            )
        })
        .collect()
}

/// `peers` for [`run_cluster`] when no member is ever cut off from its peers.
pub const NO_PEER_CUTS: &[Vec<FaultProxy>] = &[];

/// How the nemesis cuts a member off from its peers, and links it again.
pub trait Partition: Sync {
    /// Cuts it off.
    fn cut(&self);
    /// Links it again.
    fn heal(&self);
}

/// The proxies in front of a member for its peers: held, then healed.
impl Partition for Vec<FaultProxy> {
    fn cut(&self) {
        self.iter().for_each(FaultProxy::hold);
    }
    fn heal(&self) {
        self.iter().for_each(FaultProxy::heal);
    }
}

/// A member in a network namespace of its own: its link down, then up.
impl Partition for crate::netns::Link {
    fn cut(&self) {
        crate::netns::Link::cut(self);
    }
    fn heal(&self) {
        crate::netns::Link::heal(self);
    }
}

/// What the nemesis asks of a cluster: which member leads, and whether one may be killed now.
/// A closure that names the leader is one that always lets a member die.
pub trait Cluster: Sync {
    /// The index of the member that leads now, if one does and that can be asked.
    fn leader(&self) -> Option<usize>;

    /// Whether a member may die now without breaking what the system promises (Redis
    /// Sentinel with `wait_replicas=1` keeps what it acknowledged through one node's death
    /// at a time, once the replicas are back in sync). Kills wait for it (up to 10 s).
    fn may_lose_a_member(&self) -> bool {
        true
    }
}

impl<F: Fn() -> Option<usize> + Sync> Cluster for F {
    fn leader(&self) -> Option<usize> {
        self()
    }
}

/// A Sentinel group leads with its primary; a member may go while every replica is in sync.
impl Cluster for crate::servers::RedisSentinelGroup {
    fn leader(&self) -> Option<usize> {
        self.primary()
    }

    fn may_lose_a_member(&self) -> bool {
        self.in_sync()
    }
}

impl Target<'_> {
    fn heal(&self) {
        for proxy in &self.proxies {
            proxy.heal();
        }
        for peers in &self.peers {
            peers.heal();
        }
        for member in &self.members {
            let _ = member.resume();
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

/// Drives the clients over `stores` (get/put/CAS/delete traffic on every handle, two
/// watchers, two lease clients and three lock clients sharing them, as services share a
/// handle), with the nemesis when there is a server (and its proxy) and faults are on; then
/// writes the sentinel, reads the final state, checks and reports; a violation is returned
/// (the caller adds what it can tell and panics).
async fn drive(
    kind: &str,
    stores: Vec<Arc<dyn Store>>,
    config: Config,
    faulty: Option<&Target<'_>>,
    child_url: Option<String>,
) -> Result<Report, Failed> {
    let began = Instant::now();
    let at = move || began.elapsed().as_nanos() as u64;
    let history = Arc::new(Mutex::new(Vec::<Op>::new()));
    let deadline = began + config.duration;
    let keys: Vec<String> = (0..config.keys).map(|k| format!("r/k{k}")).collect();
    let capabilities = stores[0].capabilities().clone();
    let store = |i: usize| stores[i % stores.len()].clone();
    let mut tasks = Vec::new();
    for (client, store) in stores.iter().enumerate() {
        tasks.push(tokio::spawn(traffic::client(
            client,
            store.clone(),
            keys.clone(),
            config.seed.wrapping_add(client as u64 * 7919),
            began,
            deadline,
            history.clone(),
        )));
    }
    let dropped = Arc::new(Mutex::new(Vec::new()));
    if capabilities.leases {
        for (n, client) in [(1, 100), (2, 101)] {
            tasks.push(tokio::spawn(lease::client(
                client,
                store(n),
                store(n + 2),
                config.seed.wrapping_add(client as u64 * 7919),
                began,
                deadline,
                history.clone(),
                dropped.clone(),
            )));
        }
    }
    let holds = Arc::new(lock::Holds::default());
    if capabilities.locks {
        for (n, client) in [(3, 200), (4, 201), (5, 202)] {
            tasks.push(tokio::spawn(lock::client(
                client,
                store(n),
                config.seed.wrapping_add(client as u64 * 7919),
                began,
                deadline,
                holds.clone(),
            )));
        }
    }
    // Watchers of every key: one from the start through the proxy, one a third into the run
    // from an old version (or from then, without history) on a direct handle; and one of the
    // first key alone (`watch`), from the start through another proxied handle.
    let (stop_watching, stop) = tokio::sync::watch::channel(false);
    let mut watchers = Vec::new();
    for (watcher, n, single) in [(0, 1, false), (1, 0, false), (2, 3, true)] {
        let key = single.then(|| keys[0].clone());
        let log = Arc::new(Mutex::new(watch::WatchLog {
            watcher,
            key: key.clone(),
            ..watch::WatchLog::default()
        }));
        let (store, stop, task_log, history) =
            (store(n), stop.clone(), log.clone(), history.clone());
        let later = config.duration / 3;
        let task = tokio::spawn(async move {
            let mut since = None;
            if watcher == 1 {
                tokio::time::sleep(later).await;
                // Resume from the version acknowledged half a second ago (recent enough to
                // be kept in every backend's history).
                let back = at().saturating_sub(500_000_000);
                if store.capabilities().watch_history {
                    since = history
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .filter_map(|o| match o.outcome {
                            history::Outcome::Written(v) if o.end <= back => {
                                Some(v.saturating_sub(1))
                            }
                            _ => None,
                        })
                        .max();
                }
            }
            let watched = key.unwrap_or_default();
            watch::watcher(store, watched, single, since, began, stop, task_log).await
        });
        watchers.push((log, task));
    }
    // Client processes: two doing traffic, one holding the lock.
    let children = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut next_child = 300;
    let start_child = |role: &'static str, client: usize| {
        let url = child_url.as_deref().unwrap_or_default();
        let holds: Arc<dyn lock::LockLog> = holds.clone();
        process::Child::start(
            role,
            client,
            url,
            &keys,
            config.seed.wrapping_add(client as u64 * 7919),
            began,
            deadline,
            history.clone(),
            holds,
        )
        .unwrap_or_else(|e| panic!("a client process could not start: {e}"))
    };
    if child_url.is_some() && config.processes {
        let mut started = children.lock().await;
        for _ in 0..2 {
            started.push(start_child("traffic", next_child));
            next_child += 1;
        }
        if capabilities.locks {
            started.push(start_child("lock", 400));
        }
    }
    let faults = match faulty {
        Some(target) if config.faults => {
            let spawn = |client: usize| start_child("traffic", client);
            let log = nemesis(target, &children, &spawn, &config, began, deadline).await;
            target.heal();
            log
        }
        _ => {
            tokio::time::sleep_until(deadline.into()).await;
            Vec::new()
        }
    };
    for task in tasks {
        task.await.expect("a robustness client panicked");
    }
    for child in std::mem::take(&mut *children.lock().await) {
        child.finish(Duration::from_secs(15)).await;
    }
    // Dropped leases' keys must be gone by their deadline; wait for the last one.
    let mut dropped = std::mem::take(&mut *dropped.lock().unwrap_or_else(|p| p.into_inner()));
    lease::after_failovers(&mut dropped, &faults);
    if let Some(last) = dropped.iter().map(|d| d.gone_by).max() {
        tokio::time::sleep(Duration::from_nanos(last.saturating_sub(at()))).await;
    }
    // The sentinel: one more write every watcher must deliver; then the final state.
    let checker = stores[0].clone();
    let mut end = watch::Final::default();
    let until = Instant::now() + Duration::from_secs(15);
    while end.sentinel.is_none() && Instant::now() < until {
        match checker
            .put(watch::SENTINEL, b"end", kv_core::PutOptions::default())
            .await
        {
            Ok(version) => end.sentinel = Some(version),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let written = Instant::now();
    let mut watch_lag = Duration::ZERO;
    for (log, _) in &watchers {
        if log.lock().unwrap_or_else(|p| p.into_inner()).key.is_some() {
            continue;
        }
        delivered_within(log, written, |log| {
            log.events()
                .any(|e| Some(e.version) == end.sentinel && e.key == watch::SENTINEL)
        })
        .await;
        watch_lag = watch_lag.max(written.elapsed());
    }
    let mut final_keys: Vec<String> = history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|o| o.key.clone())
        .collect();
    final_keys.sort();
    final_keys.dedup();
    for key in final_keys {
        let start = at();
        let read = loop {
            match checker.get(&key).await {
                Ok(pair) => {
                    break pair
                        .map(|p| (String::from_utf8_lossy(&p.value).into_owned(), p.version));
                }
                Err(_) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("{kind}: the final read of {key} failed: {e}"),
            }
        };
        history.lock().unwrap_or_else(|p| p.into_inner()).push(Op {
            client: 999,
            key: key.clone(),
            call: history::Call::Get,
            outcome: history::Outcome::Read(read.clone()),
            start,
            end: at(),
        });
        end.state.insert(key, read);
    }
    // Key watchers: until they delivered their key's final state, within the same bound.
    for (log, _) in &watchers {
        delivered_within(log, written, |log| match &log.key {
            Some(key) => log.agrees(key, &end.state.get(key).cloned().unwrap_or_default()),
            None => true,
        })
        .await;
    }
    let _ = stop_watching.send(true);
    let mut logs = Vec::new();
    for (log, task) in watchers {
        let _ = task.await;
        logs.push(std::mem::take(
            &mut *log.lock().unwrap_or_else(|p| p.into_inner()),
        ));
    }
    for store in &stores {
        let _ = store.close().await;
    }
    let ops = std::mem::take(&mut *history.lock().unwrap_or_else(|p| p.into_inner()));
    let lock_problems = holds.check();
    let holds = holds.all();
    let mut report = Report {
        ops: ops.len(),
        unknown: ops
            .iter()
            .filter(|o| matches!(&o.outcome, history::Outcome::Unknown(e) if !e.starts_with(lease::EXPIRY)))
            .count(),
        failed: ops
            .iter()
            .filter(|o| {
                matches!(&o.outcome, history::Outcome::Failed(e) if e != traffic::REFUSED_WITH_TXN)
            })
            .count(),
        watch_events: logs.iter().map(|l| l.events().count()).sum(),
        watchers: logs
            .iter()
            .map(|l| {
                format!(
                    "{} events in {} segments{}",
                    l.events().count(),
                    l.segments.len(),
                    l.ended.as_ref().map_or(String::new(), |e| format!(", ended: {e}"))
                )
            })
            .collect(),
        lock_holds: holds.len(),
        lock_writes: holds.iter().map(|h| h.writes).sum(),
        leases: ops
            .iter()
            .filter(|o| o.key.starts_with("l/") && matches!(o.call, history::Call::Put(_)))
            .count(),
        watch_lag,
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
    // When a watcher first received each value: an unknown write took effect by then.
    let mut watched: HashMap<&str, HashMap<&str, u64>> = HashMap::new();
    for event in logs.iter().flat_map(|l| l.events()).filter(|e| e.put) {
        let at = watched
            .entry(event.key.as_str())
            .or_default()
            .entry(event.value.as_str())
            .or_insert(event.at);
        *at = (*at).min(event.at);
    }
    let none = HashMap::new();
    let violations: Vec<_> = by_key
        .into_iter()
        .filter_map(|(key, ops)| {
            let watched = watched.get(key).unwrap_or(&none);
            linearizable::check_key_watched(key, ops, watched).err()
        })
        .collect();
    let mut problems = watch::check(&logs, &ops, &end, capabilities.watch_coalesces);
    problems.extend(lease::check(&dropped, &end.state));
    if capabilities.snapshot_lists {
        problems.extend(list::check(&ops));
    }
    problems.extend(lock_problems);
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
            .filter(|o| {
                matches!(&o.outcome, history::Outcome::Failed(e) if e != traffic::REFUSED_WITH_TXN)
            })
            .collect()
    } else {
        Vec::new()
    };
    eprintln!(
        "{kind}: robustness seed {}: {} ops ({} unknown, {} failed), {} watch events \
         ({:?}; the last write delivered in {:?}), {} lock holds ({} writes under the lock), {} leases, faults \
         {:?}, checked in {:?}",
        config.seed,
        report.ops,
        report.unknown,
        report.failed,
        report.watch_events,
        report.watchers,
        report.watch_lag,
        report.lock_holds,
        report.lock_writes,
        report.leases,
        report.faults,
        report.checked_in
    );
    if violations.is_empty() && untyped.is_empty() && unforced.is_empty() && problems.is_empty() {
        return Ok(report);
    }
    let focus = violations
        .first()
        .and_then(|v| v.stuck.as_ref().map(|s| (v.key.as_str(), s.start)));
    let dir = save(kind, config.seed, &ops, &faults, &logs, &holds, focus);
    let mut message = String::new();
    for violation in &violations {
        if violation.inconclusive {
            let unknown = violation
                .ops
                .iter()
                .filter(|o| matches!(o.outcome, history::Outcome::Unknown(_)))
                .count();
            message.push_str(&format!(
                "\nkey {}: the checker gave up after {} states ({} operations, {unknown} with \
                 unknown outcomes): neither proven nor refuted; the deepest order placed {}, \
                 then\n  {}\nits operations around it:\n",
                violation.key,
                linearizable::STATES,
                violation.ops.len(),
                violation.placed,
                violation.stuck.as_ref().map_or("?".into(), Op::describe)
            ));
        } else {
            message.push_str(&format!(
                "\nkey {} is not linearizable: {} of its {} operations could be ordered; no \
                 order places\n  {}\nits operations around it:\n",
                violation.key,
                violation.placed,
                violation.ops.len(),
                violation.stuck.as_ref().map_or("?".into(), Op::describe)
            ));
        }
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
    for problem in problems.iter().take(10) {
        message.push_str(&format!("\n{problem}"));
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
    let _ = std::fs::write(dir.join("report.txt"), &message);
    Err(Failed {
        message: format!(
            "{kind}: robustness seed {} failed (replay with KV_ROBUSTNESS_SEED={}); history and \
             faults in {}{message}",
            config.seed,
            config.seed,
            dir.display()
        ),
        dir,
        state: end.state,
    })
}

/// A run that found a violation: what to say, where its files are, the final state read.
struct Failed {
    message: String,
    dir: PathBuf,
    state: BTreeMap<String, Option<(String, u64)>>,
}

impl Failed {
    /// Adds `lines` under `title` (and to the saved report), unless there are none.
    fn add(&mut self, title: &str, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        let mut text = format!("\n\n{title}:");
        for line in lines {
            text.push_str(&format!("\n  {line}"));
        }
        self.message.push_str(&text);
        let report = self.dir.join("report.txt");
        let saved = std::fs::read_to_string(&report).unwrap_or_default();
        let _ = std::fs::write(report, saved + &text);
    }
}

/// The nemesis on the clients' side alone, for `duration` from now: the connections through
/// `proxies` held (a partition), reset or delayed, one fault at a time with quiet pauses
/// between (as in every robustness run), all healed at the end. For a test of code built on
/// kv (a recipe, an example) under the runner's faults. Returns the log.
pub async fn client_faults(proxies: &[FaultProxy], seed: u64, duration: Duration) -> Vec<Fault> {
    let target = Target {
        members: Vec::new(),
        peers: Vec::new(),
        proxies: proxies.iter().collect(),
        leader: None,
    };
    let config = Config {
        seed,
        ..Config::from_env(duration.as_secs())
    };
    let children = tokio::sync::Mutex::new(Vec::new());
    let began = Instant::now();
    let spawn = |_: usize| -> process::Child { unreachable!("no client processes to replace") };
    let log = nemesis(&target, &children, &spawn, &config, began, began + duration).await;
    target.heal();
    log
}

/// Injects faults until `deadline`, one at a time with pauses between, each of a kind the
/// target has: a proxy's connections held (a partition), reset, or delayed; a member paused
/// (SIGSTOP) for about a second, or now and then for longer than the leases' and locks' TTLs;
/// with `config.kills`, a member killed with SIGKILL and restarted on its data; a client
/// process killed (and another started in its place) or, holding the lock, paused past its
/// TTL. Returns the log.
async fn nemesis(
    target: &Target<'_>,
    children: &tokio::sync::Mutex<Vec<process::Child>>,
    spawn: &dyn Fn(usize) -> process::Child,
    config: &Config,
    began: Instant,
    deadline: Instant,
) -> Vec<Fault> {
    let mut rng = fastrand::Rng::with_seed(config.seed ^ 0x5eed_fa17);
    let mut log = Vec::new();
    let at = || began.elapsed().as_nanos() as u64;
    let mut kinds: Vec<&'static str> = Vec::new();
    if !target.proxies.is_empty() {
        kinds.extend([
            "partition",
            "partition",
            "partition",
            "reset",
            "reset",
            "delay",
            "delay",
        ]);
    }
    if !target.members.is_empty() {
        if config.pauses {
            kinds.extend(["pause", "pause", "long pause"]);
        }
        if config.kills {
            kinds.extend(["kill", "kill"]);
            if !config.pauses {
                // The kills take the pauses' share.
                kinds.extend(["kill", "kill", "kill"]);
            }
        }
    }
    if !target.peers.is_empty() {
        kinds.extend(["member partition", "member partition"]);
    }
    {
        let children = children.lock().await;
        if children.iter().any(|c| c.role == "traffic") {
            kinds.push("client kill");
        }
        if children.iter().any(|c| c.role == "lock") {
            kinds.push("client pause");
        }
    }
    let mut next_client = 350;
    while !kinds.is_empty() {
        let quiet = Duration::from_millis(rng.u64(500..1500));
        if Instant::now() + quiet + Duration::from_millis(1500) >= deadline {
            break;
        }
        tokio::time::sleep(quiet).await;
        let length = Duration::from_millis(rng.u64(300..1300));
        let start = at();
        let proxy = target
            .proxies
            .get(rng.usize(0..target.proxies.len().max(1)));
        let leader = match target.leader {
            Some(cluster) if rng.bool() => tokio::task::block_in_place(|| cluster.leader()),
            _ => None,
        };
        let member = leader.unwrap_or_else(|| rng.usize(0..target.members.len().max(1)));
        let server = target.members.get(member);
        let peers = target.peers.get(member);
        let named = |member: &'static str, leading: &'static str| match leader {
            Some(_) => leading,
            None => member,
        };
        let kind = match (kinds[rng.usize(0..kinds.len())], proxy, server) {
            ("partition", Some(proxy), _) => {
                proxy.hold();
                tokio::time::sleep(length).await;
                proxy.heal();
                "partition"
            }
            ("reset", Some(proxy), _) => {
                proxy.drop_connections();
                "reset"
            }
            ("delay", Some(proxy), _) => {
                proxy.delay(Duration::from_millis(rng.u64(20..200)));
                tokio::time::sleep(length).await;
                proxy.heal();
                "delay"
            }
            (kind @ ("pause" | "long pause"), _, Some(server)) => {
                let length = if kind == "long pause" {
                    Duration::from_millis(rng.u64(3000..4000))
                } else {
                    length
                };
                if server.pause().is_err() {
                    continue;
                }
                tokio::time::sleep(length).await;
                let _ = server.resume();
                match kind {
                    "long pause" => named("long pause", "leader long pause"),
                    _ => named("pause", "leader pause"),
                }
            }
            ("kill", _, Some(server)) => {
                if let Some(cluster) = target.leader {
                    let until = Instant::now() + Duration::from_secs(10);
                    let ready = loop {
                        if tokio::task::block_in_place(|| cluster.may_lose_a_member()) {
                            break true;
                        }
                        if Instant::now() > until {
                            break false;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    };
                    if !ready {
                        continue;
                    }
                }
                let killed = tokio::task::block_in_place(|| server.kill9());
                tokio::time::sleep(Duration::from_millis(rng.u64(config.down_ms.clone()))).await;
                let restarted = tokio::task::block_in_place(|| server.restart());
                if let Err(e) = killed.and(restarted) {
                    panic!("the nemesis could not kill and restart the server: {e}");
                }
                named("kill", "leader kill")
            }
            ("member partition", _, _) => {
                let Some(peers) = peers else { continue };
                peers.cut();
                tokio::time::sleep(Duration::from_millis(rng.u64(1000..3000))).await;
                peers.heal();
                named("member partition", "leader partition")
            }
            ("client kill", _, _) => {
                let mut children = children.lock().await;
                let traffic: Vec<usize> = (0..children.len())
                    .filter(|&i| children[i].role == "traffic")
                    .collect();
                let victim = children.remove(traffic[rng.usize(0..traffic.len())]);
                victim.kill().await;
                children.push(spawn(next_client));
                next_client += 1;
                "client kill"
            }
            ("client pause", _, _) => {
                let children = children.lock().await;
                let Some(holder) = children.iter().find(|c| c.role == "lock") else {
                    continue;
                };
                holder.pause(true);
                // Past the lock's TTL (2 s; ZooKeeper's session timeout, up to 6 s): it must find itself
                // lost when it wakes.
                tokio::time::sleep(Duration::from_millis(rng.u64(2500..7000))).await;
                holder.pause(false);
                "client pause"
            }
            _ => continue,
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
