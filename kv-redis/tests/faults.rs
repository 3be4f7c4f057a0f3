//! Redis-specific behaviour and failure paths, against servers these tests start themselves.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::time::{Duration, Instant};

use conformance::servers::{Launcher, RedisProcess, Server, free_port, probe};
use futures::StreamExt;
use kv_core::{Error, EventKind, PutOptions, Store, WatchOptions};
use kv_redis::RedisStore;

fn skipped() -> bool {
    conformance::servers::opted_out("redis", "fault tests")
}

/// A Redis like a managed one: `CONFIG` is disabled, so keyspace notifications cannot be
/// switched on.
fn managed_redis() -> (Server, u16) {
    let server = RedisProcess
        .start_with(&["--rename-command", "CONFIG", ""])
        .unwrap();
    let port = conformance::faults::server_addr(&server.url)
        .unwrap()
        .port();
    (server, port)
}

#[tokio::test]
async fn watches_and_expiry_work_without_config() {
    if skipped() {
        return;
    }
    let (server, port) = managed_redis();
    assert!(
        probe(port, b"CONFIG GET notify-keyspace-events\r\n")
            .is_some_and(|r| r.starts_with("-ERR")),
        "CONFIG must be disabled here"
    );
    let store = RedisStore::open(&format!("{}?root=managed", server.url))
        .await
        .unwrap();
    let mut watch = store.watch_tree("", WatchOptions::default()).await.unwrap();
    store
        .put(
            "session",
            b"s",
            PutOptions::default().ttl(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let put = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(put.kind, EventKind::Put);
    let expired = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (expired.kind, expired.key.as_str()),
        (EventKind::Delete, "session")
    );
}

#[tokio::test]
async fn listing_reads_the_index_and_never_scans() {
    if skipped() {
        return;
    }
    let (server, port) = managed_redis();
    let store = RedisStore::open(&format!("{}?root=big", server.url))
        .await
        .unwrap();
    for i in 0..300 {
        store
            .put(&format!("other/{i}"), b"x", PutOptions::default())
            .await
            .unwrap();
    }
    for i in 0..5 {
        store
            .put(&format!("dir/{i}"), b"x", PutOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(store.list("dir").await.unwrap().len(), 5);
    assert_eq!(store.list_children("").await.unwrap().len(), 2);
    store.delete_tree("dir").await.unwrap();
    let stats = probe(port, b"INFO commandstats\r\n").unwrap();
    assert!(
        !stats.contains("cmdstat_scan") && !stats.contains("cmdstat_keys"),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_gives_typed_errors_and_ends_watches() {
    if skipped() {
        return;
    }
    let server = RedisProcess.start().unwrap();
    let store = RedisStore::open(&format!("{}?root=faults&timeout=1s", server.url))
        .await
        .unwrap();
    conformance::faults::a_stopped_server(&store, || drop(server)).await;
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() {
    if skipped() {
        return;
    }
    let server = RedisProcess.start().unwrap();
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        probe(port, b"CONFIG SET requirepass s3cret-pw\r\n").is_some_and(|r| r.starts_with("+OK"))
    );
    let host = server.url.trim_start_matches("redis://");
    let error = RedisStore::open(&format!("redis://:wrong-pw@{host}?timeout=2s"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Auth { .. }), "{error:?}");
    assert!(
        !format!("{error} {error:?}").contains("wrong-pw"),
        "the password leaked: {error:?}"
    );
    let store = RedisStore::open(&format!("redis://:s3cret-pw@{host}?timeout=2s"))
        .await
        .unwrap();
    store.put("k", b"v", PutOptions::default()).await.unwrap();
    assert!(!format!("{store:?}").contains("s3cret-pw"), "{store:?}");
}

#[tokio::test]
async fn an_unreachable_server_fails_at_open() {
    let port = free_port().unwrap();
    let started = Instant::now();
    let error = RedisStore::open(&format!("redis://127.0.0.1:{port}?timeout=1s"))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

// Partitions, resets, a killed and restarted server, a paused one: every case of
// `conformance::faults`, against servers of their own.
conformance::fault_tests!(
    &conformance::servers::RedisProcess,
    "?root=faults&timeout=1s",
    |url: String| async move { RedisStore::open(&url).await }
);

/// The data a watch follows is lost (FLUSHALL, as a restart without persistence) and a new
/// write reuses the revision the watch has seen, all before the watch reads again: the watch
/// ends with an error instead of waiting, silent, for revisions that will never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_when_the_data_is_lost_and_revisions_are_reused() {
    if skipped() {
        return;
    }
    let server = RedisProcess.start().unwrap();
    let url = format!("{}?root=lost&timeout=2s", server.url);
    let store = RedisStore::open(&url).await.unwrap();
    let other = RedisStore::open(&url).await.unwrap();
    store.put("k", b"1", PutOptions::default()).await.unwrap();
    let mut watch = store.watch("k", WatchOptions::default()).await.unwrap();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.version, 1);
    // While the watch blocks on the log: the data goes, and revision 1 is handed out again.
    let port = conformance::faults::server_addr(&server.url)
        .unwrap()
        .port();
    assert!(probe(port, b"FLUSHALL\r\nQUIT\r\n").is_some_and(|r| r.starts_with("+OK")));
    assert_eq!(
        other
            .put("k", b"again", PutOptions::default())
            .await
            .unwrap(),
        1
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a silent watch after the data was lost");
    match ended {
        Some(Err(Error::Unavailable { message, .. })) => {
            assert!(message.contains("lost its data"), "{message}");
        }
        other => panic!("expected the watch to end with Unavailable, got {other:?}"),
    }
}

/// A TTL value carries Redis's own expiry: Redis frees it at its TTL even when no kv client is
/// left to reap it.
#[tokio::test]
async fn redis_frees_expired_values_without_a_kv_client() {
    if skipped() {
        return;
    }
    let server = RedisProcess.start().unwrap();
    let root = conformance::random_name();
    let store = RedisStore::open(&format!("{}?root={root}", server.url))
        .await
        .unwrap();
    store
        .put(
            "brief",
            b"v",
            PutOptions::default().ttl(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    let hash = format!("kv{{{root}}}:d:brief");
    let exists = |name: &str| {
        String::from_utf8(conformance::native::redis_cli(
            &server.url,
            &["EXISTS", name],
        ))
        .unwrap()
    };
    assert_eq!(exists(&hash).trim(), "(integer) 1");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Redis removes expired keys on access and in its background cycle: a raw command that
    // touches the key sees it gone.
    assert_eq!(
        exists(&hash).trim(),
        "(integer) 0",
        "the value outlived its TTL"
    );
}

/// The native layout on a Redis whose `CONFIG` is disabled: watches fall back to polling.
#[tokio::test]
async fn native_watches_poll_where_config_is_disabled() {
    if skipped() {
        return;
    }
    let (server, _) = managed_redis();
    let store = RedisStore::open(&format!("{}?root=n&layout=native&poll=20ms", server.url))
        .await
        .unwrap();
    let mut watch = store.watch_tree("", WatchOptions::default()).await.unwrap();
    conformance::native::redis_cli(&server.url, &["SET", "n/app", "1"]);
    let seen = conformance::native::events_until(&mut watch, |seen| !seen.is_empty()).await;
    assert_eq!((seen[0].0, seen[0].1.as_str()), (EventKind::Put, "app"));
}

/// The log's length is checked every so many revisions, whichever call took them: a loop that
/// takes a lock (a revision for its token) before each write, so that every write lands on an
/// odd revision and every even one is a token, still has its log trimmed.
#[tokio::test]
async fn the_log_is_trimmed_whatever_takes_the_revisions() {
    if skipped() {
        return;
    }
    let server = RedisProcess.start().unwrap();
    let store = RedisStore::open(&format!("{}?root=trim&history=16", server.url))
        .await
        .unwrap();
    store
        .put("k", b"first", PutOptions::default())
        .await
        .unwrap();
    let mut versions = Vec::new();
    for i in 0..200u32 {
        let lock = store
            .new_lock("guard", kv_core::LockOptions::default())
            .await
            .unwrap();
        let guard = lock
            .try_acquire()
            .await
            .unwrap()
            .expect("nobody else locks");
        versions.push(
            store
                .put("k", i.to_string().as_bytes(), PutOptions::default())
                .await
                .unwrap(),
        );
        guard.release().await.unwrap();
    }
    assert!(
        versions.iter().all(|v| v % 2 == 1),
        "each write follows a lock token: {versions:?}"
    );
    let length = conformance::native::redis_cli(&server.url, &["XLEN", "kv{trim}:log"]);
    let length: u64 = String::from_utf8_lossy(&length)
        .trim()
        .trim_start_matches("(integer) ")
        .parse()
        .unwrap();
    // 16 kept, plus at most one check interval's records (32 revisions, 16 of them writes).
    assert!(
        (16..=48).contains(&length),
        "201 writes with history=16 left {length} records"
    );
}

/// The change log is trimmed in batches but keeps at least `history` records, and the trimmed
/// point it reports is exact: `since` just below it is `Compacted`, `since` at it resumes with
/// every later change.
#[tokio::test]
async fn history_keeps_at_least_its_length_and_knows_what_it_trimmed() {
    if skipped() {
        return;
    }
    let server = RedisProcess.start().unwrap();
    let store = RedisStore::open(&format!("{}?root=hist&history=16", server.url))
        .await
        .unwrap();
    let mut versions = Vec::new();
    for i in 0..40 {
        let value = format!("{i}");
        versions.push(
            store
                .put("h", value.as_bytes(), PutOptions::default())
                .await
                .unwrap(),
        );
    }
    let since = |version| WatchOptions::default().since(version);
    let oldest = match store.watch("h", since(versions[0])).await {
        Err(Error::Compacted { oldest, .. }) => oldest,
        other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
    };
    // At least the last 16 of the 40 changes are kept.
    assert!(
        oldest <= versions[24],
        "oldest {oldest}, kept from {}",
        versions[24]
    );
    let first_kept = versions.iter().position(|v| *v == oldest).unwrap();
    let mut watch = store.watch("h", since(oldest - 1)).await.unwrap();
    for (i, version) in versions.iter().enumerate().skip(first_kept) {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("every kept change is delivered")
            .unwrap()
            .unwrap();
        assert_eq!(
            (event.version, &event.value[..]),
            (*version, format!("{i}").as_bytes())
        );
    }
    assert!(matches!(
        store.watch("h", since(oldest - 2)).await,
        Err(Error::Compacted { .. })
    ));
}
