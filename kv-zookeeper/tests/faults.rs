//! ZooKeeper-specific behaviour and failure paths, against servers these tests start
//! themselves.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::time::{Duration, Instant};

use conformance::servers::{Launcher, ZooKeeperProcess};
use futures::StreamExt;
use kv_core::{Error, LockOptions, PutOptions, Store};
use kv_zookeeper::ZooKeeperStore;

/// ZooKeeper's own client on a server of this test's own, to look at the nodes kv leaves.
async fn raw_client(server: &conformance::servers::Server) -> zookeeper_client::Client {
    let host = server.url.trim_start_matches("zookeeper://");
    zookeeper_client::Client::connect(host).await.unwrap()
}

/// A fault proxy in front of a server of this test's own.
async fn proxy_to(server: &conformance::servers::Server) -> conformance::faults::FaultProxy {
    let addr = conformance::faults::server_addr(&server.url).unwrap();
    conformance::faults::FaultProxy::start(addr).await.unwrap()
}

/// A store opened on the server directly and one through `proxy`, both with `suffix`.
async fn direct_and_through(
    server: &conformance::servers::Server,
    proxy: &conformance::faults::FaultProxy,
    suffix: &str,
) -> (ZooKeeperStore, ZooKeeperStore) {
    let open = |url: String| async move { ZooKeeperStore::open(&url).await.unwrap() };
    let direct = open(format!("{}{suffix}", server.url)).await;
    (
        direct,
        open(format!("{}{suffix}", proxy.url(&server.url))).await,
    )
}

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
            Err(e) if e.is_transient() && Instant::now() < deadline => {
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
    let raw = raw_client(&server).await;
    // The base itself exists only if the TTL put got as far as making its directories (it may
    // have been cut off before, with the connection the refused request broke).
    let left = match raw.list_children("/oversize").await {
        Err(zookeeper_client::Error::NoNode) => Vec::new(),
        listed => listed.unwrap(),
    };
    assert_eq!(left, Vec::<String>::new(), "no node left behind");
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
    assert!(error.is_transient(), "{error:?}");
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
    let proxy = proxy_to(&server).await;
    let suffix = "/rearm?timeout=1s&session_timeout=6s";
    let (direct, proxied) = direct_and_through(&server, &proxy, suffix).await;
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

/// A CAS whose read and write straddle a delete and a new create of its key must fail: the new
/// value node starts again at data version 0, as the one the CAS read, so a `setData` on the
/// data version alone would overwrite the newcomer (found by the robustness runs: `cas if
/// version 643` applied over a `cas absent` made after a delete). The CAS goes through a proxy
/// that delays every chunk 400 ms, so its write reaches the server ~800 ms after its read did;
/// the delete and the new create land in between. Each layout, three rounds (one failure is
/// enough: the layout's guard must catch every one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cas_fails_on_a_key_deleted_and_created_again_after_its_read() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let proxy = proxy_to(&server).await;
    for options in ["", "&layout=native"] {
        let suffix = format!("/aba{}?timeout=5s{options}", options.len());
        let (direct, slow) = direct_and_through(&server, &proxy, &suffix).await;
        for round in 0..3 {
            let key = format!("k{round}");
            direct
                .put(&key, b"first", PutOptions::default())
                .await
                .unwrap();
            let read = direct.get(&key).await.unwrap().unwrap().version;
            proxy.delay(Duration::from_millis(400));
            let cas = slow.atomic_put(
                &key,
                b"stale",
                kv_core::Precondition::Version(read),
                PutOptions::default(),
            );
            let recreate = async {
                // The CAS's read reaches the server at ~400 ms, its write at ~1,200 ms.
                tokio::time::sleep(Duration::from_millis(750)).await;
                assert!(direct.delete(&key).await.unwrap());
                direct
                    .put(&key, b"second", PutOptions::default())
                    .await
                    .unwrap()
            };
            let (cas, second) = tokio::join!(cas, recreate);
            proxy.heal();
            assert!(
                matches!(cas, Err(Error::Conflict { .. })),
                "layout {options:?}, round {round}: the CAS from version {read} must fail, the key \
                 having been deleted and created again (version {second}) after its read: {cas:?}"
            );
            let now = direct.get(&key).await.unwrap().unwrap();
            assert_eq!((&now.value[..], now.version), (&b"second"[..], second));
        }
    }
}

/// The nodes under a path, recursively (raw client), as paths relative to it.
async fn tree(raw: &zookeeper_client::Client, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut level = vec![path.to_owned()];
    while let Some(at) = level.pop() {
        let Ok(children) = raw.list_children(&at).await else {
            continue;
        };
        for child in children {
            let child = format!("{at}/{child}");
            found.push(child[path.len()..].to_owned());
            level.push(child);
        }
    }
    found.sort();
    found
}

/// A deleted key keeps the node that guards its writes (its epoch node; in the native layout
/// its emptied node) until `reclaim_after` has passed with the key still empty; then it goes,
/// with the directories it kept. Keys whose guard a handle did not reclaim (dropped before,
/// or emptied by a lease's end) are found by a list and reclaimed by the listing handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_keys_are_reclaimed_after_reclaim_after() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let raw = raw_client(&server).await;
    assert!(matches!(
        ZooKeeperStore::open(&format!(
            "{}/r?timeout=1s&session_timeout=2s&reclaim_after=2s",
            server.url
        ))
        .await,
        Err(Error::InvalidArgument { .. })
    ));
    for (base, options) in [("/reclaim", ""), ("/reclaim-native", "&layout=native")] {
        let url = format!(
            "{}{base}?timeout=1s&session_timeout=2s&reclaim_after=4s{options}",
            server.url
        );
        let store = ZooKeeperStore::open(&url).await.unwrap();
        let put = |key: &'static str| store.put(key, b"v", PutOptions::default());
        put("a/b/c").await.unwrap();
        put("kept").await.unwrap();
        put("x").await.unwrap();
        assert!(store.delete("a/b/c").await.unwrap());
        assert!(store.delete("x").await.unwrap());
        let left = tree(&raw, base).await;
        assert!(
            left.iter().any(|p| p.starts_with("/a/b/c")),
            "{options}: the guard stays at first: {left:?}"
        );
        assert_eq!(store.list_children("").await.unwrap().len(), 1, "{left:?}");
        tokio::time::sleep(Duration::from_secs(6)).await;
        let left = tree(&raw, base).await;
        assert!(
            !left
                .iter()
                .any(|p| p.starts_with("/a") || p.starts_with("/x")),
            "{options}: reclaimed after 4 s: {left:?}"
        );
        // A handle dropped before its reclaim: the next list finds the key and reclaims it.
        put("y").await.unwrap();
        assert!(store.delete("y").await.unwrap());
        drop(store);
        let store = ZooKeeperStore::open(&url).await.unwrap();
        assert!(tree(&raw, base).await.iter().any(|p| p.starts_with("/y")));
        assert_eq!(store.list("").await.unwrap().len(), 1);
        tokio::time::sleep(Duration::from_secs(6)).await;
        let left = tree(&raw, base).await;
        assert!(
            !left.iter().any(|p| p.starts_with("/y")),
            "{options}: found by the list and reclaimed: {left:?}"
        );
        assert!(store.get("kept").await.unwrap().is_some());
    }
}

/// A create-if-absent that read a key empty (its epoch at version 1) must not land beside a
/// value created after the epoch was reclaimed and grew back to version 1: its `multi`
/// creates its value node exclusively and checks that the other value name (here the TTL
/// value `=t`) is still free. The slow client's write reaches the server ~800 ms after its read;
/// the reclaim and the new TTL value land in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_read_a_key_empty_fails_beside_a_value_made_after_a_reclaim() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let raw = raw_client(&server).await;
    let proxy = proxy_to(&server).await;
    let suffix = "/crossing?timeout=2s&session_timeout=3s&reclaim_after=6s";
    let (direct, slow) = direct_and_through(&server, &proxy, suffix).await;
    direct
        .put("k", b"first", PutOptions::default())
        .await
        .unwrap();
    assert!(direct.delete("k").await.unwrap());
    let deleted = Instant::now();
    tokio::time::sleep(Duration::from_millis(5_400)).await;
    proxy.delay(Duration::from_millis(400));
    let create = slow.atomic_put(
        "k",
        b"stale",
        kv_core::Precondition::MustNotExist,
        PutOptions::default(),
    );
    let ttl_put = async {
        // The reclaim comes ~6 s after the delete, between the slow read (~5.8 s) and write
        // (~6.6 s); the TTL value right after it.
        while raw.check_stat("/crossing/k/=e").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reclaimed = deleted.elapsed();
        let ttl = PutOptions::default().ttl(Duration::from_secs(30));
        (reclaimed, direct.put("k", b"ttl", ttl).await.unwrap())
    };
    let (create, (reclaimed, ttl_version)) = tokio::join!(create, ttl_put);
    proxy.heal();
    assert!(
        matches!(create, Err(Error::Conflict { .. })),
        "the key was made again (version {ttl_version}, {reclaimed:?} after the delete) after \
         the create read it empty: {create:?}"
    );
    let now = direct.get("k").await.unwrap().unwrap();
    assert_eq!((&now.value[..], now.version), (&b"ttl"[..], ttl_version));
}

/// A handle remembers its own conditional writes so that a CAS on the version it wrote needs
/// no read (one round trip). What it remembers must not outlive the key: another client's
/// delete and re-create (the new node back at data version 0) must make that CAS fail.
#[tokio::test]
async fn a_cas_on_its_own_write_fails_once_the_key_was_made_again() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let url = format!("{}/known?timeout=2s", server.url);
    let (mine, other) = (
        ZooKeeperStore::open(&url).await.unwrap(),
        ZooKeeperStore::open(&url).await.unwrap(),
    );
    let cas = |version| kv_core::Precondition::Version(version);
    let absent = kv_core::Precondition::MustNotExist;
    let none = PutOptions::default;
    // A chain of CASes, each on the version the last one wrote.
    let mut version = mine.atomic_put("k", b"0", absent, none()).await.unwrap();
    for i in 1..5 {
        let value = format!("{i}");
        version = mine
            .atomic_put("k", value.as_bytes(), cas(version), none())
            .await
            .unwrap();
        assert_eq!(other.get("k").await.unwrap().unwrap().version, version);
    }
    // Made again by another client: same node name, data version 0 again.
    let created = mine.atomic_put("j", b"mine", absent, none()).await.unwrap();
    assert!(other.delete("j").await.unwrap());
    let again = other
        .atomic_put("j", b"theirs", absent, none())
        .await
        .unwrap();
    assert!(
        matches!(
            mine.atomic_put("j", b"stale", cas(created), none()).await,
            Err(Error::Conflict { .. })
        ),
        "the key was made again at version {again} since this handle wrote version {created}"
    );
    assert_eq!(&other.get("j").await.unwrap().unwrap().value[..], b"theirs");
    // Rewritten by another client in place: the remembered data version is behind.
    let mine_now = mine
        .atomic_put("k", b"5", cas(version), none())
        .await
        .unwrap();
    other.put("k", b"theirs", none()).await.unwrap();
    assert!(matches!(
        mine.atomic_put("k", b"6", cas(mine_now), none()).await,
        Err(Error::Conflict { .. })
    ));
}

/// A key deleted while a watch was disconnected is reported deleted at a version its next
/// write cannot have: ZooKeeper before 3.9 does not say a delete's zxid, and the resync after
/// the reconnect used "the newest version read + 1", which the key's next write can get (the
/// deep run saw `r/k0` deleted at 14244, then put at 14244). The key's last version + 1 is at
/// most the delete's zxid and below any later write's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_found_by_a_resync_is_never_at_the_next_writes_version() {
    use kv_core::{EventKind, WatchOptions};
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let proxy = proxy_to(&server).await;
    let suffix = "/resync?timeout=1s&session_timeout=6s";
    let (direct, watching) = direct_and_through(&server, &proxy, suffix).await;
    direct.put("a", b"1", PutOptions::default()).await.unwrap();
    let mut events = watching
        .watch_tree("", WatchOptions::default())
        .await
        .unwrap();
    async fn next(events: &mut kv_core::WatchStream) -> kv_core::WatchEvent {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next());
        event
            .await
            .expect("an event in time")
            .expect("open")
            .unwrap()
    }
    let first = next(&mut events).await;
    assert_eq!(
        first.version,
        direct.get("a").await.unwrap().unwrap().version
    );
    // Cut the watch off, delete `a` and write `b` (the newest version a resync reads), let
    // the watch resync, then write `a` again: the next version after `b`'s.
    proxy.hold();
    assert!(direct.delete("a").await.unwrap());
    let b = direct.put("b", b"2", PutOptions::default()).await.unwrap();
    proxy.drop_connections();
    proxy.heal();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = next(&mut events).await;
        seen.push((event.key.as_str().to_owned(), event.kind, event.version));
    }
    // A create straight away (a plain put would first try a `setData`, whose failure takes a
    // zxid of its own).
    let absent = kv_core::Precondition::MustNotExist;
    let a = direct.atomic_put("a", b"3", absent, PutOptions::default());
    let a = a.await.unwrap();
    assert_eq!(a, b + 1, "no other write between: the case of the deep run");
    loop {
        let event = next(&mut events).await;
        seen.push((event.key.as_str().to_owned(), event.kind, event.version));
        if event.key.as_str() == "a" && event.kind == EventKind::Put {
            break;
        }
    }
    let of_a: Vec<u64> = seen.iter().filter(|e| e.0 == "a").map(|e| e.2).collect();
    assert!(
        of_a.windows(2).all(|w| w[0] < w[1]),
        "versions of `a` must increase: {seen:?}"
    );
}

/// `purge` (throwaway namespaces: tests, `kvctl check`) leaves no node of the store behind: not
/// the guards deletes leave for the reclaimer (epoch nodes; the native layout's hollow nodes
/// and their markers), which no reclaimer would collect once the handle is gone.
#[tokio::test]
async fn purge_leaves_no_node_behind() {
    if skipped() {
        return;
    }
    let server = ZooKeeperProcess.start().unwrap();
    let raw = raw_client(&server).await;
    for (base, options) in [("/purged", ""), ("/purged-native", "?layout=native")] {
        let store = ZooKeeperStore::open(&format!("{}{base}{options}", server.url))
            .await
            .unwrap();
        for key in ["a/b", "a", "x", "y/z"] {
            store.put(key, b"v", PutOptions::default()).await.unwrap();
        }
        assert!(store.delete("a").await.unwrap() && store.delete("x").await.unwrap());
        let guard = LockOptions::default().ttl(Duration::from_secs(5));
        drop(
            store
                .new_lock("y", guard)
                .await
                .unwrap()
                .acquire()
                .await
                .unwrap(),
        );
        assert!(!tree(&raw, base).await.is_empty());
        store.purge().await.unwrap();
        assert_eq!(tree(&raw, base).await, Vec::<String>::new(), "{options}");
        for leftover in [format!("{base}!kv"), format!("{base}!kv-hollow")] {
            assert!(
                raw.check_stat(&leftover).await.unwrap().is_none(),
                "{leftover}"
            );
        }
    }
}
