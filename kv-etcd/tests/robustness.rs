//! Random traffic from several handles under random faults, every history checked for per-key
//! linearizability (`conformance::robustness`), against a server of this test's own.

use kv_etcd::EtcdStore;

conformance::robustness_tests!(
    &conformance::servers::EtcdProcess,
    "/robustness?timeout=1s",
    10,
    |url: String| async move { EtcdStore::open(&url).await },
    kills = true
);

/// The same on a 3-member cluster: members killed and restarted, paused, cut off from their
/// peers (the leader half the time), each member's client traffic cut, reset and delayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_history_under_faults_is_linearizable() {
    if conformance::servers::opted_out("etcd", "cluster robustness tests") {
        return;
    }
    let (cluster, peers) = conformance::servers::EtcdCluster::start_with_peer_proxies(3)
        .await
        .unwrap_or_else(|e| panic!("no etcd cluster: {e}"));
    let members: Vec<_> = cluster.members.iter().collect();
    let mut config = conformance::robustness::Config::from_env(10);
    config.kills = true;
    let leader = || cluster.leader();
    conformance::robustness::run_cluster(
        "etcd-cluster",
        &members,
        &peers,
        &cluster.url,
        Some(&leader),
        "/robustness?timeout=1s",
        config,
        |url: String| async move { EtcdStore::open(&url).await },
    )
    .await;
}
