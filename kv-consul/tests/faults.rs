//! Consul-specific behaviour and failure paths, against agents these tests start themselves.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::time::Duration;

use conformance::servers::{ConsulProcess, Launcher};
use kv_consul::ConsulStore;
use kv_core::{Error, PutOptions, Store};

fn skipped() -> bool {
    conformance::servers::opted_out("consul", "fault tests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_gives_typed_errors_and_ends_watches() {
    if skipped() {
        return;
    }
    let server = ConsulProcess.start().unwrap();
    let store = ConsulStore::open(&format!("{}/faults?timeout=1s", server.url))
        .await
        .unwrap();
    conformance::faults::a_stopped_server(&store, || drop(server)).await;
}

#[tokio::test]
async fn acl_tokens_are_checked_and_never_shown() {
    if skipped() {
        return;
    }
    let master = "5d1f6e0c-7a52-4c1e-9a39-0d4f9e6b2a11";
    let server = ConsulProcess
        .start_with(&format!(
            r#"acl {{ enabled = true default_policy = "deny" tokens {{ master = "{master}" }} }}"#
        ))
        .unwrap();
    let wrong = "0b6c8f5e-1111-2222-3333-444455556666";
    let error = ConsulStore::open(&format!("{}/acl?token={wrong}&timeout=2s", server.url))
        .await
        .expect_err("a wrong token must fail at open");
    assert!(matches!(error, Error::Auth { .. }), "{error:?}");
    assert!(!format!("{error} {error:?}").contains(wrong));
    let error = ConsulStore::open(&format!("{}/acl?timeout=2s", server.url))
        .await
        .expect_err("no token under default_policy=deny must fail at open");
    assert!(matches!(error, Error::Auth { .. }), "{error:?}");

    let store = ConsulStore::open(&format!("{}/acl?token={master}", server.url))
        .await
        .unwrap();
    assert!(!format!("{store:?}").contains(master), "{store:?}");
    let version = store.put("k", b"v", PutOptions::default()).await.unwrap();
    assert_eq!(store.get("k").await.unwrap().unwrap().version, version);
    store
        .put(
            "brief",
            b"b",
            PutOptions::default().ttl(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let lock = store
        .new_lock("leader", kv_core::LockOptions::default())
        .await
        .unwrap();
    lock.try_acquire()
        .await
        .unwrap()
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn unreachable_agent_fails_at_open() {
    let port = conformance::servers::free_port().unwrap();
    let started = std::time::Instant::now();
    let error = ConsulStore::open(&format!("consul://127.0.0.1:{port}?timeout=1s"))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn bad_urls_are_rejected() {
    for url in [
        "consul://",
        "consul://h?frobnicate=1",
        "consul://h?ca=/x",
        "consul://h?timeout=soon",
    ] {
        let error = ConsulStore::open(url).await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidUrl { .. }),
            "{url}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_store_without_a_root_uses_top_level_keys() {
    if skipped() {
        return;
    }
    let server = ConsulProcess.start().unwrap();
    let store = ConsulStore::open(&server.url).await.unwrap();
    store
        .put("top/k", b"v", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(&store.get("top/k").await.unwrap().unwrap().value[..], b"v");
    let lock = store
        .new_lock("top", kv_core::LockOptions::default())
        .await
        .unwrap();
    let guard = lock.try_acquire().await.unwrap().unwrap();
    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.key.to_string())
        .collect();
    assert_eq!(keys, vec!["top/k"], "the lock key is not a kv key");
    assert!(matches!(
        store.put("!kv/x", b"v", PutOptions::default()).await,
        Err(Error::InvalidKey { .. })
    ));
    guard.release().await.unwrap();
    assert_eq!(store.delete_tree("").await.unwrap(), 1);
}

// Partitions, resets, a killed and restarted server, a paused one: every case of
// `conformance::faults`, against servers of their own.
conformance::fault_tests!(
    &conformance::servers::ConsulProcess,
    "/faults?timeout=1s",
    |url: String| async move { ConsulStore::open(&url).await }
);
