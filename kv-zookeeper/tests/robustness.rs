//! Random traffic from several handles under random faults, every history checked for per-key
//! linearizability (`conformance::robustness`), against a server of this test's own.
//!
//! `reclaim_after=12s` (above the 6 s sessions plus the 1 s calls, leaving a handle 4 s to CAS
//! on its own last write without a read) so that emptied keys' guards are reclaimed during a
//! run, not only after it: a write that read a key before its guard was reclaimed must still
//! be refused (these runs found the ABA that the guards close: a CAS applied to a key deleted
//! and created again after its read).

use kv_zookeeper::ZooKeeperStore;

conformance::robustness_tests!(
    &conformance::servers::ZooKeeperProcess,
    "/robustness?timeout=1s&session_timeout=6s&reclaim_after=12s",
    10,
    |url: String| async move { ZooKeeperStore::open(&url).await },
    kills = true,
    processes = (true, true)
);

/// The same on a 3-member ensemble: members killed and restarted, paused and cut off from
/// their peers (the leader half the time), each member's client traffic cut, reset and
/// delayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_history_under_faults_is_linearizable() {
    if conformance::servers::opted_out("zookeeper", "cluster robustness tests") {
        return;
    }
    let (ensemble, peers) = conformance::servers::ZooKeeperEnsemble::start_with_peer_proxies(3)
        .await
        .unwrap_or_else(|e| panic!("no ZooKeeper ensemble: {e}"));
    let members: Vec<_> = ensemble.members.iter().collect();
    let mut config = conformance::robustness::Config::from_env(10);
    config.kills = true;
    let leader = || ensemble.leader();
    conformance::robustness::run_cluster(
        "zookeeper-cluster",
        &members,
        &peers,
        &ensemble.url,
        Some(&leader),
        "/robustness?timeout=1s&session_timeout=6s&reclaim_after=12s",
        config,
        |url: String| async move { ZooKeeperStore::open(&url).await },
    )
    .await;
}
