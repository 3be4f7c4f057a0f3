//! kv on a Consul datacenter of 3 servers and a client agent (on loopback ports, started by
//! these tests), pointed at the agent as applications are: a leader election must cost no
//! failed call that can wait for it, and nothing acknowledged is lost.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::servers::ConsulCluster;
use kv_consul::ConsulStore;
use kv_core::Store;

/// Four writers increment a counter with CAS through the client agent while the leader server
/// is killed and restarted: no read fails, a store opened during the election works, and every
/// acknowledged increment is kept (`conformance::clusters::a_cas_counter_through_a_fault`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_election_fails_no_read_and_loses_no_increment() {
    if conformance::servers::opted_out("consul", "cluster tests") {
        return;
    }
    let cluster = ConsulCluster::start(3).unwrap_or_else(|e| panic!("no Consul cluster: {e}"));
    let url = format!("{}/counter?timeout=5s", cluster.agent.url);
    let store: Arc<dyn Store> = Arc::new(ConsulStore::open(&url).await.unwrap());
    let leader = cluster.leader().expect("a leader");
    let open_during_election = std::sync::Mutex::new(None);
    let runtime = tokio::runtime::Handle::current();
    let outcome = conformance::clusters::a_cas_counter_through_a_fault(
        store,
        "n",
        4,
        Duration::from_secs(12),
        Duration::from_secs(3),
        true,
        || {
            cluster.servers[leader].kill9().unwrap();
            let started = Instant::now();
            runtime
                .block_on(ConsulStore::open(&url))
                .expect("a store opens during the election");
            *open_during_election.lock().unwrap() = Some(started.elapsed());
            std::thread::sleep(Duration::from_secs(2));
            cluster.servers[leader].restart().unwrap();
        },
    )
    .await;
    eprintln!(
        "consul cluster, leader killed under a 4-writer CAS load through the client agent: \
         {outcome:?} (no read failed); a store opened during the election in {:?}",
        open_during_election.lock().unwrap().unwrap()
    );
}
