//! Random traffic from several handles under random faults, every history checked for per-key
//! linearizability (`conformance::robustness`), against a server of this test's own.

use kv_consul::ConsulStore;

conformance::robustness_tests!(
    &conformance::servers::ConsulProcess,
    "/robustness?timeout=1s",
    10,
    |url: String| async move { ConsulStore::open(&url).await }
);

/// The same on 3 Consul servers behind a client agent (the agent's traffic cut, reset and
/// delayed; servers killed and restarted on their data, paused, and cut off from their peers
/// — each server runs in a network namespace of its own, whose link the nemesis sets down —
/// the leader half the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_history_under_faults_is_linearizable() {
    if conformance::servers::opted_out("consul", "cluster robustness tests") {
        return;
    }
    let cluster = conformance::servers::ConsulCluster::start_in_namespaces(3).unwrap_or_else(|e| {
        panic!("no Consul cluster in network namespaces (root and iproute2 needed): {e}")
    });
    let members: Vec<_> = cluster.servers.iter().collect();
    let mut config = conformance::robustness::Config::from_env(10);
    config.kills = true;
    let leader = || cluster.leader();
    conformance::robustness::run_cluster(
        "consul-cluster",
        &members,
        cluster.links(),
        &cluster.agent.url,
        Some(&leader),
        "/robustness?timeout=1s",
        config,
        |url: String| async move { ConsulStore::open(&url).await },
    )
    .await;
}
