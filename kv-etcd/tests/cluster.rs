//! kv on a 3-member etcd cluster (members on loopback ports, started by these tests): a hung or
//! killed member must not fail calls the rest of the cluster can answer.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::servers::{EtcdCluster, Server};
use kv_core::{PutOptions, Store};
use kv_etcd::EtcdStore;
use kv_etcd::proto::etcdserverpb::{StatusRequest, maintenance_client::MaintenanceClient};

fn cluster() -> Option<EtcdCluster> {
    if conformance::servers::opted_out("etcd", "cluster tests") {
        return None;
    }
    Some(EtcdCluster::start(3).unwrap_or_else(|e| panic!("no etcd cluster: {e}")))
}

/// The member's id and its leader's, from its own status.
async fn leader_of(member: &Server) -> (u64, u64) {
    let endpoint = member.url.replacen("etcd://", "http://", 1);
    let mut client = MaintenanceClient::connect(endpoint).await.unwrap();
    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    (status.header.unwrap().member_id, status.leader)
}

/// Index of the members that is not the leader, and of the one that is.
async fn follower_and_leader(cluster: &EtcdCluster) -> (usize, usize) {
    let mut follower = None;
    let mut leader = None;
    for (i, member) in cluster.members.iter().enumerate() {
        let (id, leads) = leader_of(member).await;
        if id == leads {
            leader = Some(i);
        } else if follower.is_none() {
            follower = Some(i);
        }
    }
    (follower.unwrap(), leader.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_member_does_not_fail_calls_the_others_can_answer() {
    let Some(cluster) = cluster() else { return };
    let (follower, _) = follower_and_leader(&cluster).await;
    // The hung member is listed first, where every fresh handle starts.
    let mut hosts: Vec<&str> = cluster.url["etcd://".len()..].split(',').collect();
    let hung = hosts.remove(follower);
    hosts.insert(0, hung);
    let url = format!("etcd://{}/hung?timeout=2s", hosts.join(","));
    EtcdStore::open(&url)
        .await
        .unwrap()
        .put("k", b"v", PutOptions::default())
        .await
        .unwrap();
    cluster.members[follower].pause().unwrap();
    // As kvctl does: a fresh handle per call.
    let fresh =
        conformance::clusters::fresh_handles_read(10, "k", b"v", || EtcdStore::open(&url)).await;
    // One long-lived handle: reads and writes.
    let store = EtcdStore::open(&url).await.unwrap();
    let started = Instant::now();
    for i in 0..20 {
        store
            .put("k", format!("{i}").as_bytes(), PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
        assert!(store.exists("k").await.unwrap());
        assert_eq!(store.list("").await.unwrap().len(), 1);
    }
    let shared = started.elapsed();
    cluster.members[follower].resume().unwrap();
    eprintln!(
        "etcd cluster, one member hung (SIGSTOP): 10 fresh handles opened and read in {fresh:?}; \
         one handle did 20 x (put, exists, list) in {shared:?}"
    );
}

/// A counter incremented with CAS by four writers while the leader is killed and restarted:
/// the final value is exactly the number of increments acknowledged (unknown outcomes resolved
/// by re-reading); see `conformance::clusters::a_cas_counter_through_a_fault`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_cas_load_keeps_every_acknowledged_increment() {
    let Some(cluster) = cluster() else { return };
    let url = format!("{}/counter?timeout=2s", cluster.url);
    let store: Arc<dyn Store> = Arc::new(EtcdStore::open(&url).await.unwrap());
    let (_, leader) = follower_and_leader(&cluster).await;
    let outcome = conformance::clusters::a_cas_counter_through_a_fault(
        store,
        "n",
        4,
        Duration::from_secs(12),
        Duration::from_secs(3),
        false,
        || {
            cluster.members[leader].kill9().unwrap();
            std::thread::sleep(Duration::from_secs(2));
            cluster.members[leader].restart().unwrap();
        },
    )
    .await;
    eprintln!("etcd cluster, leader killed under a 4-writer CAS load: {outcome:?}");
}

/// With one listed member dead, a store opens and works; a lock held through a leader change is
/// kept, or lost with `lost()` before anyone else holds it; a watch through the leader change
/// delivers every change or ends with an error (`conformance::clusters::promises_through_a_fault`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_and_a_leader_change_keep_every_promise() {
    let Some(cluster) = cluster() else { return };
    let (follower, _) = follower_and_leader(&cluster).await;
    tokio::task::block_in_place(|| cluster.members[follower].kill9().unwrap());
    let url = format!("{}/leader?timeout=2s", cluster.url);
    let store = EtcdStore::open(&url)
        .await
        .expect("opens with one member dead");
    store.put("k", b"v", PutOptions::default()).await.unwrap();
    tokio::task::block_in_place(|| cluster.members[follower].restart().unwrap());
    let other = EtcdStore::open(&url).await.unwrap();
    let (_, leader) = follower_and_leader(&cluster).await;
    let promises = conformance::clusters::promises_through_a_fault(
        &store,
        &other,
        Duration::from_secs(3),
        || cluster.members[leader].kill9().unwrap(),
    )
    .await;
    tokio::task::block_in_place(|| cluster.members[leader].restart().unwrap());
    eprintln!("etcd cluster, leader killed: {promises:?}");
}

conformance::cluster_conformance_tests!(
    name: "etcd cluster",
    kind: "etcd",
    start: conformance::servers::EtcdCluster::start(3).map(|c| (c.url.clone(), c)),
    namespace: |url, name| format!("{url}/{name}"),
    open: kv_etcd::EtcdStore::open,
);

/// The robustness runs' partition between members is real: a leader whose peers' connections
/// to it are held through its proxy is replaced by another member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_peers_is_replaced() {
    if conformance::servers::opted_out("etcd", "cluster tests") {
        return;
    }
    let (cluster, peers) = EtcdCluster::start_with_peer_proxies(3).await.unwrap();
    let started = Instant::now();
    let leader = loop {
        if let Some(leader) = cluster.leader() {
            break leader;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    peers[leader][0].hold();
    let cut = Instant::now();
    let replaced = loop {
        match tokio::task::block_in_place(|| cluster.leader()) {
            Some(now) if now != leader => break now,
            _ if cut.elapsed() > Duration::from_secs(15) => {
                panic!("member {leader} still leads 15 s after it was cut off from its peers")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    eprintln!(
        "leader {leader} cut off from its peers; member {replaced} leads after {:?}",
        cut.elapsed()
    );
    peers[leader][0].heal();
}
