//! kv on a Consul datacenter of 3 servers and a client agent (on loopback ports, started by
//! these tests), pointed at the agent as applications are: a leader election must cost no
//! failed call that can wait for it, and nothing acknowledged is lost.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conformance::servers::ConsulCluster;
use kv_consul::ConsulStore;
use kv_core::{Precondition, PutOptions, Store};

/// Four writers increment a counter with CAS through the client agent while the leader server
/// is killed and restarted; a store opened during the election works. Each value carries every
/// writer's last increment, so a CAS whose outcome is unknown is resolved by a re-read: the
/// final count is exactly the acknowledged increments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_election_fails_no_call_and_loses_no_increment() {
    if conformance::servers::opted_out("consul", "cluster tests") {
        return;
    }
    let cluster = ConsulCluster::start(3).unwrap_or_else(|e| panic!("no Consul cluster: {e}"));
    let url = format!("{}/counter?timeout=5s", cluster.agent.url);
    let store: Arc<dyn Store> = Arc::new(ConsulStore::open(&url).await.unwrap());
    store
        .atomic_put(
            "n",
            b"0|0,0,0,0",
            Precondition::MustNotExist,
            PutOptions::default(),
        )
        .await
        .unwrap();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let failed_calls = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut writers = Vec::new();
    for writer in 0..4usize {
        let (store, acknowledged, failed_calls) =
            (store.clone(), acknowledged.clone(), failed_calls.clone());
        writers.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let current = match store.get("n").await {
                    Ok(Some(current)) => current,
                    other => panic!("a read failed instead of waiting for the election: {other:?}"),
                };
                let (count, mut last) = parse(&current.value);
                seq += 1;
                last[writer] = seq;
                let mine = format!(
                    "{}|{}",
                    count + 1,
                    last.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                );
                match store
                    .atomic_put(
                        "n",
                        mine.as_bytes(),
                        Precondition::Version(current.version),
                        PutOptions::default(),
                    )
                    .await
                {
                    Ok(_) => {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(kv_core::Error::Conflict { .. }) => {}
                    Err(e) => {
                        assert!(
                            e.is_outcome_unknown(),
                            "a write may fail only when its answer was lost: {e}"
                        );
                        failed_calls.fetch_add(1, Ordering::Relaxed);
                        loop {
                            if let Ok(Some(now)) = store.get("n").await {
                                if parse(&now.value).1[writer] == seq {
                                    acknowledged.fetch_add(1, Ordering::Relaxed);
                                }
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = cluster.leader().expect("a leader");
    let killed = Instant::now();
    tokio::task::block_in_place(|| cluster.servers[leader].kill9().unwrap());
    // Opening during the election: no leader needed.
    let opened = ConsulStore::open(&url).await;
    let open_took = killed.elapsed();
    opened.expect("a store opens during the election");
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| cluster.servers[leader].restart().unwrap());
    for writer in writers {
        writer.await.unwrap();
    }
    let (count, _) = parse(&store.get("n").await.unwrap().unwrap().value);
    let failed = failed_calls.load(Ordering::Relaxed);
    eprintln!(
        "consul cluster, leader killed under a CAS load through the client agent: counter \
         {count}, acknowledged {}, writes whose answer was lost {failed}, reads failed 0; a \
         store opened during the election in {open_took:?}",
        acknowledged.load(Ordering::Relaxed)
    );
    assert_eq!(count, acknowledged.load(Ordering::Relaxed));
}

/// `count|w0,w1,w2,w3`: the counter and each writer's last increment.
fn parse(value: &[u8]) -> (u64, Vec<u64>) {
    let text = std::str::from_utf8(value).unwrap();
    let (count, last) = text.split_once('|').unwrap();
    (
        count.parse().unwrap(),
        last.split(',').map(|n| n.parse().unwrap()).collect(),
    )
}
