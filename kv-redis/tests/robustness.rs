//! Random traffic from several handles under random faults, every history checked for per-key
//! linearizability (`conformance::robustness`), against a server of this test's own.

use kv_redis::RedisStore;

conformance::robustness_tests!(
    &conformance::servers::DurableRedisProcess,
    "?root=robustness&timeout=1s",
    10,
    |url: String| async move { RedisStore::open(&url).await },
    kills = true
);

/// The same on Redis with Sentinel (a primary, two replicas, three Sentinels; every write
/// confirmed by a replica, `wait_replicas=1`): data nodes killed and restarted on their data,
/// the primary half the time, so that Sentinel fails over under the traffic; the clients'
/// traffic to the Sentinels cut, reset and delayed. No pauses: a primary frozen and woken
/// takes writes until Sentinel demotes it, which Redis does not promise to keep (SEMANTICS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_history_under_failovers_is_linearizable() {
    if conformance::servers::opted_out("redis", "Sentinel robustness tests") {
        return;
    }
    let group = std::sync::Arc::new(
        conformance::servers::RedisSentinelGroup::start(2, 3)
            .unwrap_or_else(|e| panic!("no Redis Sentinel group: {e}")),
    );
    let members: Vec<_> = group.nodes.iter().collect();
    let mut config = conformance::robustness::Config::from_env(10);
    config.kills = true;
    config.pauses = false;
    // Down long enough, often, for the Sentinels (down after 1 s) to promote a replica; a
    // kill waits until the replicas are in sync (what `wait_replicas=1` needs).
    config.down_ms = 500..4000;
    // Every change of primary the Sentinels report, while the traffic runs (on a thread of
    // its own: asking the Sentinels blocks).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failovers = std::thread::spawn({
        let (group, done) = (group.clone(), done.clone());
        move || {
            let mut count = 0;
            let mut last = group.primary();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let now = group.primary();
                if now.is_some() && now != last {
                    count += 1;
                    last = now;
                }
            }
            count
        }
    });
    conformance::robustness::run_cluster(
        "redis-sentinel",
        &members,
        conformance::robustness::NO_PEER_CUTS,
        &group.url,
        Some(&*group),
        "?root=robustness&timeout=1s&wait_replicas=1",
        config,
        |url: String| async move { RedisStore::open(&url).await },
    )
    .await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let failovers = failovers.join().expect("the failover counter");
    eprintln!("redis-sentinel: {failovers} failovers");
}
