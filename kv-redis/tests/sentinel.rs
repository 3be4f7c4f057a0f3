//! kv on Redis with Sentinel (a primary, two replicas and three Sentinels on loopback ports,
//! started by these tests), through `redis+sentinel://`: when the primary dies, kv follows the
//! one Sentinel promotes; with `wait_replicas=1`, nothing acknowledged is lost.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::servers::RedisSentinelGroup;
use futures::StreamExt;
use kv_core::{PutOptions, Store};
use kv_redis::RedisStore;

fn group() -> Option<RedisSentinelGroup> {
    if conformance::servers::opted_out("redis", "Sentinel tests") {
        return None;
    }
    Some(RedisSentinelGroup::start(2, 3).unwrap_or_else(|e| panic!("no Redis Sentinel group: {e}")))
}

/// Kills the primary, waits (up to 30 s) until the Sentinels name another, and restarts the old
/// one (which Sentinel turns into a replica). Returns the time until the Sentinels named the
/// new primary.
fn fail_over(group: &RedisSentinelGroup) -> Duration {
    let old = group.primary().expect("a primary");
    group.nodes[old].kill9().unwrap();
    let killed = Instant::now();
    while group.primary() == Some(old) {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let promoted = killed.elapsed();
    group.nodes[old].restart().unwrap();
    promoted
}

/// Four writers increment a counter with CAS while the primary is killed: kv follows the new
/// primary, and with `wait_replicas=1` the final count is exactly the increments acknowledged
/// (`conformance::clusters::a_cas_counter_through_a_fault`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_cas_load_keeps_every_acknowledged_increment_with_wait_replicas() {
    let Some(group) = group() else { return };
    let url = format!("{}?root=counter&timeout=5s&wait_replicas=1", group.url);
    let store: Arc<dyn Store> = Arc::new(RedisStore::open(&url).await.unwrap());
    let promoted = std::sync::Mutex::new(None);
    let outcome = conformance::clusters::a_cas_counter_through_a_fault(
        store.clone(),
        "n",
        4,
        Duration::from_secs(15),
        Duration::from_secs(3),
        false,
        || *promoted.lock().unwrap() = Some(fail_over(&group)),
    )
    .await;
    // Still served after the failover: by the new primary.
    store
        .put("after", b"v", PutOptions::default())
        .await
        .unwrap();
    eprintln!(
        "redis sentinel, primary killed under a 4-writer CAS load (wait_replicas=1): \
         {outcome:?}; Sentinel promoted a replica after {:?}",
        promoted.lock().unwrap().unwrap()
    );
}

/// Through a failover: writes work again once a replica is promoted (measured: the
/// unavailability); a lock is kept, or lost with `lost()` before anyone else holds it; a watch
/// delivers every later change or ends with an error
/// (`conformance::clusters::promises_through_a_fault`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_keeps_every_promise() {
    let Some(group) = group() else { return };
    let url = format!("{}?root=promises&timeout=2s&wait_replicas=1", group.url);
    let store = RedisStore::open(&url).await.unwrap();
    let other = RedisStore::open(&url).await.unwrap();
    let promoted = std::sync::Mutex::new(None);
    let promises = conformance::clusters::promises_through_a_fault(
        &store,
        &other,
        Duration::from_secs(3),
        || *promoted.lock().unwrap() = Some(fail_over(&group)),
    )
    .await;
    eprintln!(
        "redis sentinel, primary killed: Sentinel promoted a replica after {:?}; {promises:?} \
         (writes_again_after counts from the kill)",
        promoted.lock().unwrap().unwrap()
    );
}

/// A hung replica (SIGSTOP) costs nothing: with `wait_replicas=1` and two replicas, every
/// write is confirmed by the other one, and reads never touch replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_replica_fails_no_call() {
    let Some(group) = group() else { return };
    let url = format!("{}?root=hung&timeout=2s&wait_replicas=1", group.url);
    let store = RedisStore::open(&url).await.unwrap();
    let primary = group.primary().expect("a primary");
    let replica = (primary + 1) % group.nodes.len();
    group.nodes[replica].pause().unwrap();
    let started = Instant::now();
    for i in 0..50 {
        store
            .put("k", format!("{i}").as_bytes(), PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("put {i} with a replica hung: {e}"));
        assert!(store.exists("k").await.unwrap());
    }
    let took = started.elapsed();
    group.nodes[replica].resume().unwrap();
    eprintln!(
        "redis sentinel, one replica hung: 50 x (put with wait_replicas=1, exists) in {took:?}"
    );
}

/// With `wait_replicas=1`, a read returns only what a replica has: a write no replica
/// confirmed (`OutcomeUnknown`: applied on the primary, lost if it fails now) is not read back
/// until a replica has it. Found by the Sentinel robustness run: reads returned such a write,
/// a failover lost it, and later reads went back to the value before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_returns_only_what_a_replica_has_with_wait_replicas() {
    let Some(group) = group() else { return };
    let url = format!("{}?root=barrier&timeout=1s&wait_replicas=1", group.url);
    let (writer, reader) = (
        RedisStore::open(&url).await.unwrap(),
        RedisStore::open(&url).await.unwrap(),
    );
    writer
        .put("k", b"kept", PutOptions::default())
        .await
        .unwrap();
    let primary = group.primary().expect("a primary");
    let replicas: Vec<usize> = (0..group.nodes.len()).filter(|&n| n != primary).collect();
    for &replica in &replicas {
        group.nodes[replica].pause().unwrap();
    }
    let unconfirmed = writer.put("k", b"unconfirmed", PutOptions::default()).await;
    // However often it is asked while no replica can confirm, no read returns it.
    let mut reads = Vec::new();
    let asking = Instant::now();
    while asking.elapsed() < Duration::from_secs(3) {
        let read = reader.get("k").await;
        let unreplicated = matches!(&read, Ok(Some(p)) if &p.value[..] == b"unconfirmed");
        reads.push(read.map(|p| p.map(|p| String::from_utf8_lossy(&p.value).into_owned())));
        if unreplicated {
            break;
        }
    }
    for &replica in &replicas {
        group.nodes[replica].resume().unwrap();
    }
    assert!(
        unconfirmed.as_ref().is_err_and(|e| e.is_outcome_unknown()),
        "a write no replica confirmed: {unconfirmed:?}"
    );
    assert!(
        reads
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.is_transient())),
        "reads while no replica can confirm what they saw must fail, not return the \
         unconfirmed write: {reads:?}"
    );
    // Once a replica has it, it is read (the write was applied on the primary).
    let pair = reader.get("k").await.unwrap().unwrap();
    assert_eq!(&pair.value[..], b"unconfirmed");
}

/// With `wait_replicas=1`, a watch whose change-log reads no replica can confirm ends with an
/// error within the watch liveness bound (it used to try again for as long as the replicas
/// were away, delivering nothing and never ending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_reads_no_replica_confirms_ends() {
    let Some(group) = group() else { return };
    let url = format!("{}?root=unconfirmed&timeout=1s&wait_replicas=1", group.url);
    let store = RedisStore::open(&url).await.unwrap();
    store.put("k", b"v", PutOptions::default()).await.unwrap();
    let mut watch = store
        .watch("k", kv_core::WatchOptions::default())
        .await
        .unwrap();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(&first.value[..], b"v");
    let primary = group.primary().expect("a primary");
    let replicas: Vec<usize> = (0..group.nodes.len()).filter(|&n| n != primary).collect();
    for &replica in &replicas {
        group.nodes[replica].pause().unwrap();
    }
    let frozen = Instant::now();
    let ended = tokio::time::timeout(conformance::faults::WATCH_LIVENESS, watch.next()).await;
    let took = frozen.elapsed();
    for &replica in &replicas {
        group.nodes[replica].resume().unwrap();
    }
    match ended {
        Ok(Some(Err(e))) => eprintln!("the watch ended after {took:?}: {e}"),
        other => panic!(
            "no replica could confirm the watch's reads for {took:?}: it must end with an \
             error, got {other:?}"
        ),
    }
}

/// A Sentinel that takes connections but never answers costs a discovery nothing while
/// another answers: they are all asked at once (asked in turn, the silent one took the whole
/// 1 s budget, and opening the store failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sentinel_does_not_hold_up_discovery() {
    let Some(group) = group() else { return };
    let first = conformance::faults::server_addr(&group.sentinels[0].url).unwrap();
    let silent = conformance::faults::FaultProxy::start(first).await.unwrap();
    silent.hold();
    let url = group
        .url
        .replacen(&first.to_string(), &silent.addr().to_string(), 1);
    assert_ne!(url, group.url);
    let started = Instant::now();
    let store = RedisStore::open(&format!("{url}?root=silent&timeout=1s"))
        .await
        .unwrap_or_else(|e| panic!("open with the first Sentinel silent: {e}"));
    store.put("k", b"v", PutOptions::default()).await.unwrap();
    eprintln!(
        "redis sentinel, first Sentinel silent: open and put in {:?}",
        started.elapsed()
    );
}

/// Bad Sentinel URLs are refused with what to write instead, and a service no Sentinel
/// monitors is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_urls_are_checked() {
    for url in [
        "redis+sentinel://127.0.0.1:1",
        "redis+sentinel:///svc",
        "redis+sentinel://127.0.0.1:1/a/b",
        "redis://127.0.0.1:1,127.0.0.1:2",
        "redis+sentinel://127.0.0.1:1/svc?db=x",
    ] {
        let error = RedisStore::open(url).await.unwrap_err();
        assert!(
            matches!(error, kv_core::Error::InvalidUrl { .. }),
            "{url}: {error}"
        );
    }
    let Some(group) = group() else { return };
    let url = group.url.replace("/kvtest", "/nosuchservice");
    let error = RedisStore::open(&url).await.unwrap_err().to_string();
    assert!(error.contains("does not monitor"), "{error}");
}

conformance::cluster_conformance_tests!(
    name: "redis sentinel",
    kind: "redis",
    start: conformance::servers::RedisSentinelGroup::start(2, 3).map(|c| (c.url.clone(), c)),
    namespace: |url, name| format!("{url}?root={name}"),
    open: kv_redis::RedisStore::open,
);

/// A Redis Cluster node is refused at open with what to use instead, not failed call by call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_node_is_refused_at_open() {
    if conformance::servers::opted_out("redis", "Redis Cluster test") {
        return;
    }
    let node = conformance::servers::RedisProcess
        .start_with(&["--cluster-enabled", "yes"])
        .unwrap();
    let port = conformance::faults::server_addr(&node.url).unwrap().port();
    let error = RedisStore::open(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, kv_core::Error::InvalidUrl { reason } if reason.contains("Redis Cluster")),
        "{error:?}"
    );
}
