//! What is specific to the memory backend: namespaces, URL options, bounded history, fan-out.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use futures::StreamExt;
use kv_core::{Error, EventKind, PutOptions, Store, WatchOptions};
use kv_memory::MemoryStore;

#[tokio::test]
async fn named_namespaces_are_shared_and_private_ones_are_not() {
    let a = MemoryStore::open("memory://shared-ns-test").unwrap();
    let b = MemoryStore::open("memory://shared-ns-test").unwrap();
    let other = MemoryStore::open("memory://other-ns-test").unwrap();
    let private1 = MemoryStore::open("memory://").unwrap();
    let private2 = MemoryStore::open("memory://").unwrap();
    a.put("k", b"v", PutOptions::default()).await.unwrap();
    private1
        .put("k", b"p", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(&b.get("k").await.unwrap().unwrap().value[..], b"v");
    assert!(other.get("k").await.unwrap().is_none());
    assert!(private2.get("k").await.unwrap().is_none());
    let mut watch = b.watch("w", WatchOptions::default()).await.unwrap();
    a.put("w", b"1", PutOptions::default()).await.unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap().kind, EventKind::Put);
}

#[tokio::test]
async fn a_named_namespace_lives_while_a_handle_does() {
    let first = MemoryStore::open("memory://lifetime-test").unwrap();
    first.put("k", b"v", PutOptions::default()).await.unwrap();
    let second = MemoryStore::open("memory://lifetime-test").unwrap();
    drop(first);
    assert!(second.exists("k").await.unwrap());
    drop(second);
    let third = MemoryStore::open("memory://lifetime-test").unwrap();
    assert!(!third.exists("k").await.unwrap());
}

#[tokio::test]
async fn history_is_bounded_and_compaction_is_reported() {
    let store = MemoryStore::open("memory://?history=3").unwrap();
    let first = store.put("k", b"0", PutOptions::default()).await.unwrap();
    for i in 1..10 {
        store
            .put("k", i.to_string().as_bytes(), PutOptions::default())
            .await
            .unwrap();
    }
    match store.watch("k", WatchOptions::default().since(first)).await {
        Err(Error::Compacted { requested, oldest }) => assert_eq!((requested, oldest), (first, 8)),
        other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
    }
    let mut watch = store
        .watch("k", WatchOptions::default().since(7))
        .await
        .unwrap();
    for expected in [8, 9, 10] {
        assert_eq!(watch.next().await.unwrap().unwrap().version, expected);
    }
}

#[test]
fn bad_urls_are_rejected() {
    for url in [
        "memory://a:1",
        "memory://a,b",
        "memory://a/path",
        "memory://u:p@a",
        "memory://?history=-1",
        "memory://?histroy=5",
        "memory://?max_value_bytes=big",
        "etcd://a",
    ] {
        assert!(
            matches!(MemoryStore::open(url), Err(Error::InvalidUrl { .. })),
            "{url} must be rejected"
        );
    }
}

#[tokio::test]
async fn value_limit_is_configurable() {
    let store = MemoryStore::open("memory://?max_value_bytes=4").unwrap();
    assert_eq!(store.capabilities().max_value_bytes, 4);
    store
        .put("k", b"1234", PutOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        store.put("k", b"12345", PutOptions::default()).await,
        Err(Error::ValueTooLarge { size: 5, max: 4 })
    ));
}

#[tokio::test]
async fn one_write_reaches_ten_thousand_watchers() {
    let store = MemoryStore::open("memory://").unwrap();
    let mut watches = Vec::new();
    for _ in 0..10_000 {
        watches.push(
            store
                .watch_tree("fan", WatchOptions::default().buffer(2))
                .await
                .unwrap(),
        );
    }
    store
        .put("fan/out", b"x", PutOptions::default())
        .await
        .unwrap();
    for watch in &mut watches {
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(
            (event.kind, event.key.as_str()),
            (EventKind::Put, "fan/out")
        );
    }
    drop(watches);
    // Dropped watches unregister: the next write reaches nobody and the tree is empty again.
    store.delete("fan/out").await.unwrap();
    assert!(store.list("").await.unwrap().is_empty());
}

#[test]
fn works_without_a_tokio_runtime() {
    futures::executor::block_on(async {
        let store = MemoryStore::open("memory://").unwrap();
        store.put("k", b"v", PutOptions::default()).await.unwrap();
        let lock = store
            .new_lock("l", kv_core::LockOptions::default())
            .await
            .unwrap();
        let guard = lock.acquire().await.unwrap();
        assert!(lock.try_acquire().await.unwrap().is_none());
        guard.release().await.unwrap();
        let mut watch = store.watch("k", WatchOptions::default()).await.unwrap();
        assert_eq!(&watch.next().await.unwrap().unwrap().value[..], b"v");
    });
}
