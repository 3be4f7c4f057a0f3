//! Fault injection between a client and a real server: a TCP proxy on a free loopback port that
//! passes, holds (a partition: bytes are kept, connections stay open, and everything is
//! delivered in order on heal), delays, or resets a client's traffic, and the fault cases every
//! networked backend runs through it.
//!
//! Tests open one store through the proxy ([`FaultProxy::url`]) and one directly, so the other
//! side of a partition keeps working. [`fault_tests!`](crate::fault_tests) expands into every
//! fault test for one backend. Cases that need control over the server itself (stopping
//! it) take a closure that does it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kv_core::{Error, LockOptions, PutOptions, Store, WatchOptions};

pub use crate::proxy::{FaultProxy, Mode, server_addr};

/// Runs the lock fault cases against a server at `server_url`: opens a store directly and one
/// through a [`FaultProxy`] with `open(url)` (URL = server URL + `suffix`), then
/// [`a_partitioned_lock_holder_is_told_first`] and [`a_waiter_outlasting_its_ttl_gets_the_lock`]
/// with `ttl`. Prints the measured times. One call per backend's test.
pub async fn lock_faults<S, F, Fut>(
    kind: &str,
    server_url: &str,
    suffix: &str,
    ttl: Duration,
    open: F,
) where
    S: Store,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let (proxy, direct, proxied) = proxied_stores(server_url, suffix, &open).await;
    let (told, taken) =
        a_partitioned_lock_holder_is_told_first(&proxied, &direct, &proxy, ttl).await;
    eprintln!(
        "{kind}: lock TTL {ttl:?}, holder partitioned: lost() after {told:?}, another client \
         took the lock after {taken:?}"
    );
    let waited = Instant::now();
    a_waiter_outlasting_its_ttl_gets_the_lock(&direct, &proxied, ttl).await;
    eprintln!(
        "{kind}: a waiter that waited 2 x TTL got and kept the lock ({:?} in all)",
        waited.elapsed()
    );
    let (failed, error, recovered) = a_write_during_a_partition(&proxied, &proxy).await;
    eprintln!(
        "{kind}: a put during a partition failed after {failed:?} ({error}); after the heal the \
         same handle worked again in {recovered:?}"
    );
}

/// A revoke cut off from the server by a partition says `Ok` only if the lease's key is gone
/// (read directly at once); otherwise its error says the outcome is unknown, and the key goes
/// anyway within twice the TTL (plus 2 s) after the heal: the lease is no longer renewed.
/// Returns what the revoke said and when the key was gone, from the revoke's return.
pub async fn a_revoke_cut_off(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    ttl: Duration,
) -> (String, Duration) {
    let key = "faults/revoked";
    let lease = proxied
        .grant(ttl)
        .await
        .expect("grant before the partition");
    proxied
        .put(key, b"leased", PutOptions::default().lease(&lease))
        .await
        .expect("put with the lease before the partition");
    proxy.hold();
    let revoked = tokio::time::timeout(Duration::from_secs(10), lease.revoke())
        .await
        .expect("a revoke during a partition must give up on its own");
    let returned = Instant::now();
    let left = direct.get(key).await.expect("read directly");
    proxy.heal();
    match &revoked {
        Ok(()) => assert!(
            left.is_none(),
            "revoke said Ok while the lease's key was still there: {left:?}"
        ),
        Err(e) => assert!(
            e.is_outcome_unknown(),
            "a revoke sent into a partition may have been applied: its error must say the \
             outcome is unknown: {e:?}"
        ),
    }
    let until = returned + ttl * 2 + Duration::from_secs(2);
    while direct.get(key).await.ok().flatten().is_some() {
        assert!(
            Instant::now() < until,
            "the key outlived its lease by twice the TTL after a revoke that said {revoked:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = match &revoked {
        Ok(()) => "Ok".to_owned(),
        Err(e) => format!("{e}"),
    };
    (said, returned.elapsed())
}

/// A write during a partition fails within the store's timeout (1 s in the fault tests, plus
/// slack) with a retryable error whose outcome is unknown or that reached no server; after the
/// heal the same handle works again without being reopened. Returns the time to the error,
/// the error, and the time to the first successful write once the held one has settled (up to
/// 2 s after the heal).
pub async fn a_write_during_a_partition(
    proxied: &dyn Store,
    proxy: &FaultProxy,
) -> (Duration, String, Duration) {
    proxied
        .put("faults/written", b"before", PutOptions::default())
        .await
        .expect("put before the partition");
    proxy.hold();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        proxied.put("faults/written", b"during", PutOptions::default()),
    )
    .await
    .expect("a call during a partition must give up on its own (no call without a timeout)");
    let failed = started.elapsed();
    let error = result.expect_err("a put cannot succeed through a partition");
    assert!(
        error.is_outcome_unknown(),
        "the put was sent on an open connection and its answer never came: the outcome is \
         unknown, and the error must say so (Error::Timeout): {error:?}"
    );
    assert!(
        failed < Duration::from_secs(5),
        "failed only after {failed:?}, longer than the store's timeout allows"
    );
    proxy.heal();
    let healed = Instant::now();
    // The held put may still land once its bytes are delivered (its outcome was unknown, and
    // may come from an older connection than the next call's): give it a moment, so that the
    // write below is the last one.
    while healed.elapsed() < Duration::from_secs(2) {
        match proxied.get("faults/written").await {
            Ok(Some(pair)) if pair.value != "before" => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let writing = Instant::now();
    loop {
        match proxied
            .put("faults/written", b"after", PutOptions::default())
            .await
        {
            Ok(_) => break,
            Err(e) if e.is_transient() && writing.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the handle did not recover after the heal: {e:?}"),
        }
    }
    let recovered = writing.elapsed();
    let now = proxied.get("faults/written").await.expect("get after heal");
    assert_eq!(
        now.map(|p| p.value),
        Some(bytes::Bytes::from_static(b"after")),
        "the write after the heal is read back"
    );
    (
        failed,
        format!("{error} [outcome unknown: {}]", error.is_outcome_unknown()),
        recovered,
    )
}

/// A write that reached the server and was applied, whose answer was lost because the
/// connection was reset on its way back: the error must not say that nothing was applied
/// (`is_outcome_unknown()`), since it was. `proxied` reaches the server through `proxy`, whose
/// every chunk of traffic is delayed by `delay` (longer than it takes `direct` to see the
/// write: its answer is still in the proxy then); the connections are reset as soon as
/// `direct` reads the written value. Returns the error. Panics with the broken rule.
pub async fn a_write_whose_answer_is_lost(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    delay: Duration,
) -> String {
    let key = "faults/answer-lost";
    proxied
        .put(key, b"before", PutOptions::default())
        .await
        .expect("put before the fault");
    proxy.delay(delay);
    let write = proxied.put(key, b"during", PutOptions::default());
    let reset = async {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(pair)) = direct.get(key).await
                && pair.value == "during"
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        proxy.drop_connections();
        proxy.heal();
    };
    let (result, ()) = tokio::join!(write, reset);
    let error = result.expect_err("the answer was reset on its way: the write cannot succeed");
    let stored = direct.get(key).await.expect("read back directly");
    assert_eq!(
        stored.map(|p| p.value),
        Some(bytes::Bytes::from_static(b"during")),
        "the server never applied the write (nothing tested): {error:?}"
    );
    assert!(
        error.is_outcome_unknown(),
        "the write was applied, yet its error says the outcome is known (nothing applied): \
         {error:?}"
    );
    format!("{error}")
}

/// Runs [`a_watch_through_a_partition`] twice against a server at `server_url` (stores opened
/// as in [`lock_faults`]): a partition of `hold`, then a shorter one whose connections are
/// reset (the client reconnects). Prints the outcomes.
pub async fn watch_faults<S, F, Fut>(
    kind: &str,
    server_url: &str,
    suffix: &str,
    hold: Duration,
    open: F,
) where
    S: Store,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    for reset in [false, true] {
        let (proxy, direct, proxied) = proxied_stores(server_url, suffix, &open).await;
        direct.delete_tree("w").await.expect("clean");
        let hold = if reset { hold / 2 } else { hold };
        let outcome = a_watch_through_a_partition(&proxied, &direct, &proxy, hold, reset).await;
        eprintln!(
            "{kind}: tree watch through a {hold:?} partition{}: {outcome:?}",
            if reset {
                " ending in a connection reset"
            } else {
                ""
            }
        );
    }
    let (proxy, direct, proxied) = proxied_stores(server_url, suffix, &open).await;
    let took =
        a_watch_that_stops_hearing_the_server_ends(&proxied, &direct, &proxy, WATCH_LIVENESS).await;
    eprintln!("{kind}: a watch whose connection stopped ended with an error after {took:?}");
}

/// Runs [`a_server_restart`] on a server of this test's own (`server`, started by a process
/// launcher, so it can be killed and restarted) with a store opened by `open(url + suffix)`.
/// Prints the outcome.
pub async fn restart_faults<S, F, Fut>(
    kind: &str,
    server: &crate::servers::Server,
    suffix: &str,
    open: F,
) where
    S: Store,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let store = open(format!("{}{suffix}", server.url))
        .await
        .expect("store");
    let outcome = a_server_restart(&store, server).await;
    eprintln!("{kind}: kill -9 and restart: {outcome:?}");
    let (failed, recovered) = a_paused_server(&store, server).await;
    eprintln!(
        "{kind}: server paused (SIGSTOP): a put failed after {failed:?}; after SIGCONT the handle \
         worked again in {recovered:?}"
    );
}

/// The server is frozen (SIGSTOP: connections open, nothing answered): a write fails within the
/// store's timeout with a retryable error; once it is thawed (SIGCONT) the same handle works.
/// Returns the time to the error and from the thaw to the first successful call.
pub async fn a_paused_server(
    store: &dyn Store,
    server: &crate::servers::Server,
) -> (Duration, Duration) {
    server.pause().expect("SIGSTOP");
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        store.put("pause/k", b"v", PutOptions::default()),
    )
    .await;
    let failed = started.elapsed();
    server.resume().expect("SIGCONT");
    let error = result
        .expect("a call to a frozen server must give up on its own")
        .expect_err("a frozen server cannot answer");
    assert!(error.is_transient(), "retryable: {error:?}");
    assert!(
        failed < Duration::from_secs(5),
        "failed only after {failed:?}"
    );
    let resumed = Instant::now();
    loop {
        match store.put("pause/k", b"w", PutOptions::default()).await {
            Ok(_) => break,
            Err(e) if e.is_transient() && resumed.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the handle did not recover after SIGCONT: {e:?}"),
        }
    }
    (failed, resumed.elapsed())
}

/// The longest a watch may stay open after its connection silently stopped, with the fault
/// tests' store timeout of 1 s (docs/SEMANTICS.md, "Watch liveness": 12 s + 5 x the store's
/// timeout).
pub const WATCH_LIVENESS: Duration = Duration::from_secs(17);

/// A proxy in front of the server at `server_url`, a store opened directly and one through the
/// proxy (`open(url + suffix)` each).
pub async fn proxied_stores<S, F, Fut>(
    server_url: &str,
    suffix: &str,
    open: &F,
) -> (FaultProxy, S, S)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let target =
        server_addr(server_url).unwrap_or_else(|| panic!("no 127.0.0.1:port in {server_url}"));
    let proxy = FaultProxy::start(target).await.expect("fault proxy");
    let direct = open(format!("{server_url}{suffix}"))
        .await
        .expect("direct store");
    let proxied = open(format!("{}{suffix}", proxy.url(server_url)))
        .await
        .expect("store through the proxy");
    (proxy, direct, proxied)
}

/// A lock holder cut off by a partition is told (`lost()`) before anyone else can take the
/// lock (libkv#31, swarm#2654). `proxied` reaches the server through `proxy`, `direct` does not.
/// Returns the times from the partition to `lost()` and to the other client's acquire. Panics
/// with the broken rule.
pub async fn a_partitioned_lock_holder_is_told_first(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    ttl: Duration,
) -> (Duration, Duration) {
    let holder = take_free_lock(proxied, "faults/leader", ttl).await;
    let contender = direct
        .new_lock("faults/leader", LockOptions::default().ttl(ttl))
        .await
        .expect("lock handle");
    proxy.hold();
    let partitioned = Instant::now();
    let lost = holder.lost();
    let told = async {
        lost.cancelled().await;
        partitioned.elapsed()
    };
    let taken = async {
        let guard = contender
            .acquire()
            .await
            .expect("the other client takes the lock once the holder's lease ends");
        (partitioned.elapsed(), guard)
    };
    let bound = ttl * 4 + Duration::from_secs(30);
    let (told, (taken, guard)) = tokio::time::timeout(bound, futures::future::join(told, taken))
        .await
        .unwrap_or_else(|_| panic!("neither lost() nor the other acquire within {bound:?}"));
    proxy.heal();
    assert!(
        told < taken,
        "two holders: the partitioned holder was told at {told:?}, after the other client took the lock at {taken:?}"
    );
    assert!(
        told <= ttl,
        "lost() fired {told:?} after the partition, later than the TTL {ttl:?}"
    );
    let released = tokio::time::timeout(Duration::from_secs(30), holder.release())
        .await
        .expect("release after heal answers");
    assert!(
        matches!(released, Err(Error::LockLost { .. })),
        "releasing a lost lock says so: {released:?}"
    );
    guard.release().await.expect("the new holder releases");
    (told, taken)
}

/// Takes a lock that nobody holds.
async fn take_free_lock(store: &dyn Store, key: &str, ttl: Duration) -> kv_core::LockGuard {
    store
        .new_lock(key, LockOptions::default().ttl(ttl))
        .await
        .expect("lock handle")
        .acquire()
        .await
        .expect("the free lock")
}

/// A waiter that waits longer than its own TTL still gets the lock when it is freed, and then
/// holds it (no lease taken before it was needed, or one kept alive while waiting).
pub async fn a_waiter_outlasting_its_ttl_gets_the_lock(
    first: &dyn Store,
    second: &dyn Store,
    ttl: Duration,
) {
    let held = take_free_lock(first, "faults/waited", ttl).await;
    let waiter = second
        .new_lock("faults/waited", LockOptions::default().ttl(ttl))
        .await
        .expect("lock handle");
    let waiting = tokio::spawn(async move {
        let guard = waiter.acquire().await;
        (guard, waiter)
    });
    tokio::time::sleep(ttl * 2).await;
    assert!(!waiting.is_finished(), "the lock is still held");
    held.release().await.expect("release");
    let (guard, waiter) = tokio::time::timeout(ttl * 2 + Duration::from_secs(10), waiting)
        .await
        .expect("the waiter gets the freed lock")
        .expect("task");
    let guard = guard.expect("a wait longer than the TTL still ends with the lock");
    tokio::time::sleep(ttl).await;
    assert!(!guard.is_lost(), "the new holder keeps the lock");
    let holder = waiter.holder().await.expect("holder");
    assert_eq!(
        holder.map(|h| h.fencing_token),
        Some(guard.fencing_token()),
        "the server shows the waiter as the holder"
    );
    guard.release().await.expect("release");
}

/// How a watch came through a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOutcome {
    /// Every change arrived; the time from heal to the last one.
    Delivered(Duration),
    /// The stream ended with this error instead (allowed: never silence).
    Ended(String),
}

/// A tree watch through a partition: 5 keys written before, 5 during (`hold` long, from the
/// other side), 5 right after and one more 2 s later; with `reset` the held connections are
/// also reset before the heal, so the client reconnects. Every key (each written once, so
/// coalescing cannot hide one) must arrive after the heal, or the stream must end with an
/// error — never stay open and silent.
pub async fn a_watch_through_a_partition(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    hold: Duration,
    reset: bool,
) -> WatchOutcome {
    let mut watch = proxied
        .watch_tree("w", WatchOptions::default())
        .await
        .expect("watch");
    let put = |i: usize| async move {
        direct
            .put(&format!("w/k{i:02}"), b"v", PutOptions::default())
            .await
            .expect("put from the other side of the partition");
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut next =
        async |seen: &mut std::collections::BTreeSet<String>, want: usize, within: Duration| {
            let deadline = Instant::now() + within;
            while seen.len() < want {
                match tokio::time::timeout_at(deadline.into(), watch.next()).await {
                    Ok(Some(Ok(event))) => {
                        seen.insert(event.key.to_string());
                    }
                    Ok(Some(Err(error))) => return Some(WatchOutcome::Ended(error.to_string())),
                    Ok(None) => panic!("the watch ended without an error"),
                    Err(_) => return None,
                }
            }
            Some(WatchOutcome::Delivered(Duration::ZERO))
        };
    for i in 0..5 {
        put(i).await;
    }
    match next(&mut seen, 5, Duration::from_secs(10)).await {
        Some(WatchOutcome::Delivered(_)) => {}
        other => panic!("before the partition the watch delivers every put: {other:?}"),
    }
    proxy.hold();
    let held = Instant::now();
    for i in 5..10 {
        put(i).await;
        tokio::time::sleep(hold / 6).await;
    }
    tokio::time::sleep(hold.saturating_sub(held.elapsed())).await;
    if reset {
        proxy.drop_connections();
    }
    proxy.heal();
    let healed = Instant::now();
    for i in 10..15 {
        put(i).await;
    }
    let bound = Duration::from_secs(30);
    fn silent(seen: &std::collections::BTreeSet<String>, want: usize, bound: Duration) -> ! {
        panic!(
            "a silent watch: {} of {want} keys arrived, no error, within {bound:?} after the \
             partition healed; missing {:?}",
            seen.len(),
            (0..want)
                .map(|i| format!("w/k{i:02}"))
                .filter(|k| !seen.contains(k))
                .collect::<Vec<_>>()
        )
    }
    let delivered = match next(&mut seen, 15, bound).await {
        Some(WatchOutcome::Delivered(_)) => healed.elapsed(),
        Some(ended) => return ended,
        None => silent(&seen, 15, bound),
    };
    // Still hearing the server once things have settled (a watch the server no longer holds
    // could have caught up above by re-reading, then gone silent).
    tokio::time::sleep(Duration::from_secs(2)).await;
    put(15).await;
    match next(&mut seen, 16, bound).await {
        Some(WatchOutcome::Delivered(_)) => WatchOutcome::Delivered(delivered),
        Some(ended) => ended,
        None => silent(&seen, 16, bound),
    }
}

/// A watch whose connection silently stops (a partition that never heals, while the other side
/// keeps writing) ends with an error within `bound`, never staying open and silent. Returns the
/// time from the partition to the error.
pub async fn a_watch_that_stops_hearing_the_server_ends(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    bound: Duration,
) -> Duration {
    let mut watch = proxied
        .watch_tree("live", WatchOptions::default())
        .await
        .expect("watch");
    direct
        .put("live/k", b"0", PutOptions::default())
        .await
        .expect("put");
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the watch hears the first put: {first:?}"
    );
    proxy.hold();
    let partitioned = Instant::now();
    let writes = async {
        for i in 1.. {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = direct
                .put("live/k", i.to_string().as_bytes(), PutOptions::default())
                .await;
        }
    };
    let ended = async {
        match watch.next().await {
            Some(Ok(event)) => panic!("an event came through a partition: {event:?}"),
            Some(Err(_)) => partitioned.elapsed(),
            None => panic!("the watch ended without an error"),
        }
    };
    let outcome = tokio::time::timeout(bound, async {
        tokio::select! {
            took = ended => took,
            () = writes => unreachable!("writes go on until the watch ends"),
        }
    })
    .await;
    proxy.heal();
    outcome.unwrap_or_else(|_| {
        panic!("a silent watch: still open with no error {bound:?} after its connection stopped")
    })
}

/// What a server restart did to an open store and its watch.
#[derive(Debug)]
pub struct RestartOutcome {
    /// From the restart (server ready again) to the first successful call on the same handle.
    pub recovered: Duration,
    /// Whether the server kept the data written before it was killed.
    pub kept_data: bool,
    /// How the open watch came through.
    pub watch: WatchOutcome,
}

/// The server is killed with SIGKILL and started again on the same data directory and port.
/// How two service instances' recipes came back after an outage.
#[derive(Debug, Clone, Copy)]
pub struct HealedAfter {
    /// From the server's return until both instances were registered again (new leases).
    pub registered: Duration,
    /// From the server's return until one instance led again (a new term).
    pub leading: Duration,
    /// The recipes' lease TTL.
    pub ttl: Duration,
}

/// Two instances of a service, each a handle (`open(server.url + suffix)`) with a
/// [`kv_core::Registration`] and an [`kv_core::Election::run`], through an outage: the
/// server killed, down for `outage` (longer than the TTLs: every lease is lost on the client
/// side), restarted on its data. Panics unless both are registered again and one leads again
/// within 30 s of the server's return; returns how long each took.
pub async fn recipes_heal_after_an_outage<S, F, Fut>(
    server: &crate::servers::Server,
    suffix: &str,
    outage: Duration,
    open: F,
) -> HealedAfter
where
    S: Store + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    use kv_core::{Election, Registered, Registration};
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..2 {
        let store = open(format!("{}{suffix}", server.url)).await.expect("open");
        stores.push(Arc::new(store));
    }
    let ttl = stores[0]
        .capabilities()
        .ttl
        .map_or(Duration::ZERO, |t| t.min)
        .max(Duration::from_secs(2));
    let (terms, mut elected) = tokio::sync::mpsc::unbounded_channel();
    let stop = kv_core::CancellationToken::new();
    let mut registrations = Vec::new();
    let mut runs = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let key = format!("outage/instances/{n}");
        registrations.push(Registration::start(store.clone(), &key, "up", ttl).expect("register"));
        let election = Election::new(store.clone(), "outage/leader")
            .expect("election")
            .ttl(ttl);
        let (terms, stop) = (terms.clone(), stop.clone());
        runs.push(tokio::spawn(async move {
            election
                .run(format!("{n}"), stop, move |term| {
                    let _ = terms.send(term);
                    std::future::pending::<()>()
                })
                .await
        }));
    }
    for registration in &registrations {
        registration
            .live()
            .await
            .expect("registered before the outage");
    }
    let first = tokio::time::timeout(Duration::from_secs(30), elected.recv())
        .await
        .expect("a leader before the outage")
        .expect("terms");
    let leases: Vec<Registered> = registrations.iter().map(Registration::state).collect();
    tokio::task::block_in_place(|| {
        server.kill9().expect("kill -9");
        std::thread::sleep(outage);
        server
            .restart()
            .expect("restart on the same data directory");
    });
    let returned = Instant::now();
    let (mut registered, mut leading) = (None, None);
    while registered.is_none() || leading.is_none() {
        assert!(
            returned.elapsed() < Duration::from_secs(30),
            "30 s after the server's return: registered again {registered:?} ({:?}), \
             leading again {leading:?}",
            registrations
                .iter()
                .map(Registration::state)
                .collect::<Vec<_>>()
        );
        if leading.is_none() {
            while let Ok(term) = elected.try_recv() {
                if term.fencing_token() > first.fencing_token() && !term.lost().is_cancelled() {
                    leading = Some(returned.elapsed());
                }
            }
        }
        if registered.is_none()
            && registrations.iter().zip(&leases).all(|(r, before)| {
                matches!(r.state(), Registered::Live { .. }) && r.state() != *before
            })
        {
            registered = Some(returned.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..2 {
        assert!(
            stores[0]
                .exists(&format!("outage/instances/{n}"))
                .await
                .expect("read after the outage"),
            "instance {n} registered again"
        );
    }
    stop.cancel();
    for run in runs {
        let _ = run.await;
    }
    for registration in registrations {
        registration.stop().await;
    }
    HealedAfter {
        registered: registered.unwrap_or_default(),
        leading: leading.unwrap_or_default(),
        ttl,
    }
}

/// The open handle works again without being reopened; an open watch either goes on with no
/// gap (every later change arrives, and if the server lost its data, the watch says so with
/// Delete events or an error) or ends with an error — never stays open and silent.
pub async fn a_server_restart(
    store: &dyn Store,
    server: &crate::servers::Server,
) -> RestartOutcome {
    store
        .put("restart/before", b"1", PutOptions::default())
        .await
        .expect("put before the restart");
    let mut watch = store
        .watch_tree("restart", WatchOptions::default())
        .await
        .expect("watch");
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the watch starts with the current state: {first:?}"
    );
    // The harness blocks while the server goes down and comes back (needs a multi-threaded
    // runtime: the store's own tasks go on meanwhile).
    tokio::task::block_in_place(|| {
        server.kill9().expect("kill -9");
        std::thread::sleep(Duration::from_millis(500));
        server
            .restart()
            .expect("restart on the same data directory and port");
    });
    let restarted = Instant::now();
    loop {
        match store
            .put("restart/after", b"2", PutOptions::default())
            .await
        {
            Ok(_) => break,
            Err(e) if e.is_transient() && restarted.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the handle did not recover after the restart: {e:?}"),
        }
    }
    let recovered = restarted.elapsed();
    let kept_data = store
        .get("restart/before")
        .await
        .expect("get after the restart")
        .is_some();
    // Now the watch: every later change, or an error; a lost key must be reported as gone.
    let mut seen_after = false;
    let mut saw_before_deleted = false;
    let bound = WATCH_LIVENESS + Duration::from_secs(10);
    let deadline = Instant::now() + bound;
    let mut extra = 0;
    let watch_outcome = loop {
        match tokio::time::timeout_at(deadline.into(), watch.next()).await {
            Ok(Some(Ok(event))) => {
                if event.key.as_str() == "restart/after" {
                    seen_after = true;
                }
                if event.key.as_str() == "restart/before"
                    && event.kind == kv_core::EventKind::Delete
                {
                    saw_before_deleted = true;
                }
                if event.key.as_str() == "restart/later" {
                    break WatchOutcome::Delivered(restarted.elapsed());
                }
                if seen_after && extra == 0 {
                    // Still hearing the server: one more change after the catch-up.
                    extra += 1;
                    store
                        .put("restart/later", b"3", PutOptions::default())
                        .await
                        .expect("put after the restart");
                }
            }
            Ok(Some(Err(error))) => break WatchOutcome::Ended(error.to_string()),
            Ok(None) => panic!("the watch ended without an error"),
            Err(_) => panic!(
                "a silent watch: open, no error, {bound:?} after the restart (saw restart/after: \
                 {seen_after})"
            ),
        }
    };
    if let WatchOutcome::Delivered(_) = watch_outcome {
        assert!(
            kept_data || saw_before_deleted,
            "the server lost restart/before, and the watch went on without saying so"
        );
    }
    RestartOutcome {
        recovered,
        kept_data,
        watch: watch_outcome,
    }
}

/// The server dies under an open store: calls fail with a retryable error (`Unavailable` or
/// `Timeout`) within 5 s, and an open watch ends with `Unavailable` — never silently — within
/// 20 s. `stop` kills the server. Panics with the broken rule.
pub async fn a_stopped_server(store: &dyn Store, stop: impl FnOnce()) {
    store
        .put("k", b"v", PutOptions::default())
        .await
        .expect("put before the stop");
    let mut watch = store
        .watch_tree("", WatchOptions::default())
        .await
        .expect("watch before the stop");
    assert!(
        matches!(watch.next().await, Some(Ok(_))),
        "the watch starts with the current state"
    );

    stop();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let error = store
        .put("k", b"w", PutOptions::default())
        .await
        .expect_err("a put to a stopped server must fail");
    assert!(
        error.is_transient(),
        "a dead server is Unavailable or Timeout, got {error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed only after {:?}",
        started.elapsed()
    );
    let error = store
        .get("k")
        .await
        .expect_err("a get from a stopped server must fail");
    assert!(
        matches!(error, Error::Unavailable { .. } | Error::Timeout { .. }),
        "{error:?}"
    );

    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Some(error),
                None => return None,
            }
        }
    })
    .await
    .expect("the watch must end once it cannot be resumed");
    let error = ended.expect("the watch must end with an error, not silently");
    assert!(
        matches!(error, Error::Unavailable { .. }),
        "the lost watch ends with Unavailable, got {error:?}"
    );
}

/// A server of `launcher`'s kind for one fault test, its own (so it can be cut off, killed and
/// restarted); `None`, after saying so, if `KV_TEST_SKIP` opts the kind out. Panics, with what
/// to install, if none can be started.
pub fn own_server(launcher: &dyn crate::servers::Launcher) -> Option<crate::servers::Server> {
    let kind = launcher.kind();
    if crate::servers::opted_out(kind, "fault tests") {
        return None;
    }
    Some(
        crate::servers::with_port_retries(|| launcher.start())
            .unwrap_or_else(|e| panic!("no {kind} server for the fault tests: {e}")),
    )
}

/// Expands into the fault tests of one networked backend, each against a server of its own
/// started by `$launcher` (a process launcher), with stores opened by `$open(url)` where url is
/// the server's URL + `$suffix` (which should set `timeout=1s`):
/// `locks_keep_their_promises_through_a_partition` ([`lock_faults`], TTL 3 s),
/// `watches_keep_their_promises_through_a_partition` ([`watch_faults`], a 4 s partition),
/// `a_write_whose_answer_is_lost_is_an_unknown_outcome` ([`a_write_whose_answer_is_lost`],
/// 200 ms per chunk), `a_revoke_cut_off_by_a_partition_says_so` ([`a_revoke_cut_off`], TTL 3 s)
/// and `a_restarted_or_paused_server_is_used_again` ([`restart_faults`]).
///
/// ```ignore
/// conformance::fault_tests!(&EtcdProcess, "/faults?timeout=1s", |url: String| async move {
///     EtcdStore::open(&url).await
/// });
/// ```
#[macro_export]
macro_rules! fault_tests {
    ($launcher:expr, $suffix:expr, $open:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn locks_keep_their_promises_through_a_partition() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let ttl = ::std::time::Duration::from_secs(3);
            $crate::faults::lock_faults(kind, &server.url, $suffix, ttl, $open).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn watches_keep_their_promises_through_a_partition() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let hold = ::std::time::Duration::from_secs(4);
            $crate::faults::watch_faults(kind, &server.url, $suffix, hold, $open).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_write_whose_answer_is_lost_is_an_unknown_outcome() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let (proxy, direct, proxied) =
                $crate::faults::proxied_stores(&server.url, $suffix, &$open).await;
            let delay = ::std::time::Duration::from_millis(200);
            let error =
                $crate::faults::a_write_whose_answer_is_lost(&proxied, &direct, &proxy, delay)
                    .await;
            eprintln!("{kind}: a put whose answer was reset: {error}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_revoke_cut_off_by_a_partition_says_so() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let (proxy, direct, proxied) =
                $crate::faults::proxied_stores(&server.url, $suffix, &$open).await;
            let ttl = ::std::time::Duration::from_secs(3);
            let (said, gone) =
                $crate::faults::a_revoke_cut_off(&proxied, &direct, &proxy, ttl).await;
            eprintln!("{kind}: a revoke during a partition said {said}; its key was gone {gone:?} after it returned");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_restarted_or_paused_server_is_used_again() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            $crate::faults::restart_faults(kind, &server, $suffix, $open).await;
        }
    };
}
