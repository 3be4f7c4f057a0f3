//! One run: the clients, their watchers and the nemesis started together, the history
//! gathered and checked, and on a failed cluster run each member's own view.

use super::*;

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
pub(super) fn hosts(url: &str) -> Vec<std::net::SocketAddr> {
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

/// What each member holds of every key in `state` whose reading on some member differs from
/// `state` (the final state read through the clients' URL): one line per such key, empty when
/// all members agree with it. Each member is read through a store of its own (with that
/// backend's linearizable read: a member that answers otherwise than the others after the run
/// has diverged).
pub(super) async fn member_views<S, F, Fut>(
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

/// Drives the clients over `stores` (get/put/CAS/delete traffic on every handle, two
/// watchers, two lease clients and three lock clients sharing them, as services share a
/// handle), with the nemesis when there is a server (and its proxy) and faults are on; then
/// writes the sentinel, reads the final state, checks and reports; a violation is returned
/// (the caller adds what it can tell and panics).
pub(super) async fn drive(
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
            let log =
                nemesis::run_nemesis(target, &children, &spawn, &config, began, deadline).await;
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
pub(super) struct Failed {
    pub(super) message: String,
    pub(super) dir: PathBuf,
    pub(super) state: BTreeMap<String, Option<(String, u64)>>,
}

impl Failed {
    /// Adds `lines` under `title` (and to the saved report), unless there are none.
    pub(super) fn add(&mut self, title: &str, lines: Vec<String>) {
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
