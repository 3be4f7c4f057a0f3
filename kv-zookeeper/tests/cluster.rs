//! kv on a 3-member ZooKeeper ensemble (members on loopback ports, started by these tests): a
//! hung or killed member must not fail calls the rest can answer, nor silence a watch.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conformance::servers::ZooKeeperEnsemble;
use futures::StreamExt;
use kv_core::{Precondition, PutOptions, Store, WatchOptions};
use kv_zookeeper::ZooKeeperStore;

fn ensemble() -> Option<ZooKeeperEnsemble> {
    if conformance::servers::opted_out("zookeeper", "cluster tests") {
        return None;
    }
    Some(ZooKeeperEnsemble::start(3).unwrap_or_else(|e| panic!("no ZooKeeper ensemble: {e}")))
}

fn follower(ensemble: &ZooKeeperEnsemble) -> usize {
    let leader = ensemble.leader().expect("a leader");
    (leader + 1) % ensemble.members.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_member_does_not_fail_calls_the_others_can_answer() {
    let Some(ensemble) = ensemble() else { return };
    let url = format!("{}/hung?timeout=2s&session_timeout=4s", ensemble.url);
    ZooKeeperStore::open(&url)
        .await
        .unwrap()
        .put("k", b"v", PutOptions::default())
        .await
        .unwrap();
    let hung = follower(&ensemble);
    ensemble.members[hung].pause().unwrap();
    let started = Instant::now();
    for i in 0..10 {
        let store = ZooKeeperStore::open(&url)
            .await
            .unwrap_or_else(|e| panic!("open {i} with a hung member: {e}"));
        let got = store
            .get("k")
            .await
            .unwrap_or_else(|e| panic!("get {i}: {e}"));
        assert_eq!(got.unwrap().value, "v");
    }
    let fresh = started.elapsed();
    ensemble.members[hung].resume().unwrap();
    eprintln!(
        "zookeeper ensemble, one member hung (SIGSTOP): 10 fresh handles opened and read in {fresh:?}"
    );
}

/// Four writers increment a counter with CAS while the leader is killed and restarted, and a
/// tree watch runs through it. Each value carries every writer's last increment, so a writer
/// whose CAS had an unknown outcome tells from a re-read whether it was applied: the final
/// count is exactly the acknowledged increments. The watch delivers a later change, or ends
/// with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_cas_load_keeps_every_acknowledged_increment() {
    let Some(ensemble) = ensemble() else { return };
    let url = format!("{}/counter?timeout=2s&session_timeout=4s", ensemble.url);
    let store: Arc<dyn Store> = Arc::new(ZooKeeperStore::open(&url).await.unwrap());
    store
        .atomic_put(
            "n",
            b"0|0,0,0,0",
            Precondition::MustNotExist,
            PutOptions::default(),
        )
        .await
        .unwrap();
    let watcher = ZooKeeperStore::open(&url).await.unwrap();
    let mut watch = watcher
        .watch_tree("", WatchOptions::default())
        .await
        .unwrap();
    // Consumed as it goes; the outcome once `after` (written last) arrives or the stream ends.
    let watching = tokio::spawn(async move {
        loop {
            match watch.next().await {
                Some(Ok(event)) if event.key.as_str() == "after" => return "live".to_owned(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return format!("ended with an error: {e}"),
                None => panic!("the watch ended without an error"),
            }
        }
    });
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
                let Ok(Some(current)) = store.get("n").await else {
                    failed_calls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
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
                        failed_calls.fetch_add(1, Ordering::Relaxed);
                        // Applied or not? Every later value carries this writer's last
                        // increment forward.
                        loop {
                            if let Ok(Some(now)) = store.get("n").await {
                                if parse(&now.value).1[writer] == seq {
                                    acknowledged.fetch_add(1, Ordering::Relaxed);
                                }
                                break;
                            }
                            assert!(
                                Instant::now() < deadline + Duration::from_secs(30),
                                "no answer after {e}"
                            );
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = ensemble.leader().expect("a leader");
    let killed = Instant::now();
    tokio::task::block_in_place(|| {
        ensemble.members[leader].kill9().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        ensemble.members[leader].restart().unwrap();
    });
    for writer in writers {
        writer.await.unwrap();
    }
    let (count, _) = loop {
        if let Ok(Some(last)) = store.get("n").await {
            break parse(&last.value);
        }
    };
    // The watch still hears the ensemble: a change after everything else.
    store
        .put("after", b"x", PutOptions::default())
        .await
        .unwrap();
    let watch_outcome = tokio::time::timeout(Duration::from_secs(20), watching)
        .await
        .expect("a silent watch after the leader was killed")
        .unwrap();
    eprintln!(
        "zookeeper ensemble, leader killed under CAS load ({:?} ago): counter {count}, \
         acknowledged {}, calls that failed meanwhile {}; the watch: {watch_outcome}",
        killed.elapsed(),
        acknowledged.load(Ordering::Relaxed),
        failed_calls.load(Ordering::Relaxed)
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
