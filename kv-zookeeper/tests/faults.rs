//! ZooKeeper-specific behaviour and failure paths, against servers these tests start
//! themselves.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::time::{Duration, Instant};

use conformance::servers::{Launcher, ZooKeeperProcess};
use futures::StreamExt;
use kv_core::{Error, LockOptions, PutOptions, Store};
use kv_zookeeper::ZooKeeperStore;

fn skipped() -> bool {
    conformance::servers::opted_out("zookeeper", "fault tests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_gives_typed_errors_and_ends_watches() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let store = ZooKeeperStore::open(&format!(
        "{}/faults?timeout=1s&session_timeout=2s",
        server.url
    ))
    .await
    .unwrap();
    conformance::faults::a_stopped_server(&store, || drop(server)).await;
}

#[tokio::test]
async fn digest_credentials_protect_the_data_and_stay_secret() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let host = server.url.trim_start_matches("zookeeper://");
    let owner = ZooKeeperStore::open(&format!("zookeeper://app:s3cret-pw@{host}/guarded"))
        .await
        .unwrap();
    assert!(!format!("{owner:?}").contains("s3cret-pw"), "{owner:?}");
    owner.put("k", b"v", PutOptions::default()).await.unwrap();
    for url in [
        format!("zookeeper://app:wrong-pw@{host}/guarded?timeout=2s"),
        format!("zookeeper://{host}/guarded?timeout=2s"),
    ] {
        let error = ZooKeeperStore::open(&url)
            .await
            .expect_err("another identity must not open the protected base");
        assert!(matches!(error, Error::Auth { .. }), "{url}: {error:?}");
        assert!(!format!("{error} {error:?}").contains("wrong-pw"));
    }
    assert_eq!(&owner.get("k").await.unwrap().unwrap().value[..], b"v");
}

#[tokio::test]
async fn a_write_the_server_refuses_leaves_nothing_behind() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    // Claim more than the server's 1 MiB jute.maxbuffer, so that the server is the one
    // refusing the write.
    let store = ZooKeeperStore::open(&format!(
        "{}/oversize?max_value_bytes=4000000&timeout=3s",
        server.url
    ))
    .await
    .unwrap();
    let big = vec![7u8; 2 * 1024 * 1024];
    // A plain put tries an in-place rewrite first; a TTL put creates the directories first.
    for (key, options) in [
        ("dir/big", PutOptions::default()),
        (
            "ttl/big",
            PutOptions::default().ttl(Duration::from_secs(60)),
        ),
    ] {
        let error = store
            .put(key, &big, options)
            .await
            .expect_err("the server refuses a 2 MiB request");
        assert!(
            !matches!(error, Error::Conflict { .. }),
            "a refused write is not a conflict: {error:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.exists("dir/big").await {
            Ok(exists) => {
                assert!(!exists, "the refused value must not exist");
                break;
            }
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(store.list("").await.unwrap().is_empty());
    assert!(
        store.list_children("").await.unwrap().is_empty(),
        "no directory left behind"
    );
    let raw = zookeeper_client::Client::connect(server.url.trim_start_matches("zookeeper://"))
        .await
        .unwrap();
    assert_eq!(
        raw.list_children("/oversize").await.unwrap(),
        Vec::<String>::new(),
        "no node left behind"
    );
    store
        .put("dir/small", b"ok", PutOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn unreachable_ensemble_fails_at_open() {
    let port = conformance::servers::free_port().unwrap();
    let started = Instant::now();
    let error = ZooKeeperStore::open(&format!("zookeeper://127.0.0.1:{port}?timeout=1s"))
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn bad_urls_are_rejected() {
    for url in [
        "zookeeper://",
        "zookeeper://h/zookeeper",
        "zookeeper://user@h",
        "zookeeper://h?frobnicate=1",
        "zookeeper://h?session_timeout=soon",
    ] {
        let error = ZooKeeperStore::open(url).await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidUrl { .. }),
            "{url}: {error:?}"
        );
    }
}

/// After a reconnect (the connection reset, the session kept) the server holds kv's
/// persistent watch again — zookeeper-client 0.11.2 does not re-register it by itself — and the
/// watch hears later changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_holds_the_watch_again_after_a_reconnect() {
    use futures::StreamExt;
    use kv_core::WatchOptions;
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let port = conformance::faults::server_addr(&server.url)
        .unwrap()
        .port();
    let proxy = conformance::faults::FaultProxy::start(([127, 0, 0, 1], port).into())
        .await
        .unwrap();
    let suffix = "/rearm?timeout=1s&session_timeout=6s";
    let direct = ZooKeeperStore::open(&format!("{}{suffix}", server.url))
        .await
        .unwrap();
    let proxied = ZooKeeperStore::open(&format!("{}{suffix}", proxy.url(&server.url)))
        .await
        .unwrap();
    // Watches the server holds, from `wchs` ("Total watches:N").
    let watches = || {
        conformance::servers::probe(port, b"wchs")
            .and_then(|r| {
                r.split("Total watches:")
                    .nth(1)
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let before = watches();
    let mut watch = proxied
        .watch_tree("app", WatchOptions::default())
        .await
        .unwrap();
    assert!(watches() > before, "the watch is registered on the server");
    proxy.drop_connections();
    // The client reconnects (same session) and kv re-arms its watch.
    let started = Instant::now();
    while watches() <= before {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the server holds no watch for the session after the reconnect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "zookeeper: watch re-armed {:?} after the connection reset",
        started.elapsed()
    );
    direct
        .put("app/after", b"v", PutOptions::default())
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the re-armed watch hears a later change")
        .unwrap()
        .unwrap();
    assert_eq!(event.key.as_str(), "app/after");
}

// Partitions, resets, a killed and restarted server, a paused one: every case of
// `conformance::faults`, against servers of their own.
conformance::fault_tests!(
    &conformance::servers::ZooKeeperProcess,
    "/faults?timeout=1s&session_timeout=6s",
    |url: String| async move { ZooKeeperStore::open(&url).await }
);

/// A subtree too big for one `multi` goes in batches while ZooKeeper's container reaper
/// (every 500 ms here) removes the directories earlier batches emptied: no false "racing
/// with writers", and the count is every key removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_delete_tree_outlives_the_container_reaper() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let store = ZooKeeperStore::open(&format!("{}/big", server.url))
        .await
        .unwrap();
    let keys: Vec<String> = (0..16_000).map(|i| format!("d/{}/k{i}", i % 8)).collect();
    futures::stream::iter(&keys)
        .for_each_concurrent(64, |key| {
            let store = &store;
            async move {
                store.put(key, b"v", PutOptions::default()).await.unwrap();
            }
        })
        .await;
    let started = Instant::now();
    assert_eq!(store.delete_tree("d").await.unwrap(), 16_000);
    eprintln!("delete_tree of 16,000 keys: {:?}", started.elapsed());
    assert!(store.list("").await.unwrap().is_empty());
}

/// A lock TTL below the servers' minimum session timeout (400 ms on the test servers) cannot be
/// kept: the lease is the session, which the server would stretch. `try_acquire` says so with
/// the server's number and takes nothing; a TTL the server accepts works.
#[tokio::test]
async fn a_lock_ttl_below_the_servers_minimum_session_is_refused() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let store = ZooKeeperStore::open(&format!("{}/short", server.url))
        .await
        .unwrap();
    let short = LockOptions::default().ttl(Duration::from_millis(200));
    let lock = store.new_lock("l", short).await.unwrap();
    let error = lock.try_acquire().await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidArgument { reason } if reason.contains("400ms")),
        "{error:?}"
    );
    let ok = LockOptions::default().ttl(Duration::from_secs(1));
    let guard = store
        .new_lock("l", ok)
        .await
        .unwrap()
        .try_acquire()
        .await
        .unwrap();
    assert!(guard.is_some(), "the refused lock took nothing");
}

/// A holder whose whole process froze past its lock's TTL (here: the runtime's only thread
/// blocked, as SIGSTOP would) is told at its first look after waking, before the client has
/// noticed anything: the guard's validity is a session timeout after the last request kv had
/// answered on the lock's session.
#[test]
fn a_frozen_lock_holder_is_told_at_its_first_look() {
    if skipped() {
        return;
    }
    let server = conformance::servers::with_port_retries(|| ZooKeeperProcess.start()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = ZooKeeperStore::open(&format!("{}/frozen?timeout=1s", server.url))
            .await
            .unwrap();
        let ttl = Duration::from_secs(2);
        let lock = store
            .new_lock("job", LockOptions::default().ttl(ttl))
            .await
            .unwrap();
        let guard = lock.acquire().await.unwrap();
        assert!(guard.validity().until().is_some(), "a validity deadline");
        tokio::time::sleep(ttl).await;
        assert!(!guard.is_lost(), "renewed while the process runs");
        std::thread::sleep(ttl + Duration::from_millis(500));
        assert!(
            guard.is_lost(),
            "frozen past the session timeout: told at once"
        );
    });
}
