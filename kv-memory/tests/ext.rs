//! `StoreExt` (JSON values, read-modify-write) and `PrefixStore` on the reference backend.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::sync::Arc;

use futures::StreamExt as _;
use kv_core::{
    Error, EventKind, LockOptions, PrefixStore, PutOptions, Store, StoreExt, WatchOptions,
};
use kv_memory::MemoryStore;
use serde::{Deserialize, Serialize};

fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::open("memory://").unwrap())
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

#[tokio::test]
async fn json_values_round_trip_and_bad_json_is_a_decode_error() {
    let store = store();
    let version = store
        .put_json("c", &Counter { n: 7 }, PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        store.get_json::<Counter>("c").await.unwrap(),
        Some((Counter { n: 7 }, version))
    );
    assert_eq!(store.get_json::<Counter>("absent").await.unwrap(), None);
    store
        .put("bad", b"not json", PutOptions::default())
        .await
        .unwrap();
    let error = store.get_json::<Counter>("bad").await.unwrap_err();
    assert!(
        matches!(&error, Error::Decode { key, .. } if key == "bad"),
        "{error:?}"
    );
    // An update of a value that is not JSON for the type writes nothing.
    let error = store
        .update_json("bad", |c: Option<Counter>| c.unwrap_or_default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Decode { .. }), "{error:?}");
    assert_eq!(
        &store.get("bad").await.unwrap().unwrap().value[..],
        b"not json"
    );
}

/// 16 tasks × 25 increments through `update_json` on one key: every increment lands once
/// (each write is a CAS on the version read; losers read again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_lose_nothing() {
    let store = store();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    store
                        .update_json("counter", |c: Option<Counter>| Counter {
                            n: c.unwrap_or_default().n + 1,
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (counter, _) = store.get_json::<Counter>("counter").await.unwrap().unwrap();
    assert_eq!(counter.n, 400);
}

#[tokio::test]
async fn an_update_that_fails_writes_nothing() {
    let store = store();
    let error = store
        .update("k", |_| Err(Error::invalid_argument("no")))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidArgument { .. }));
    assert!(!store.exists("k").await.unwrap());
}

#[tokio::test]
async fn a_prefix_store_sees_and_touches_only_its_subtree() {
    let shared = store();
    for key in ["tenants/acme", "tenants/acme-x/k", "tenants/other/k", "top"] {
        shared.put(key, b"n", PutOptions::default()).await.unwrap();
    }
    let acme = PrefixStore::new(shared.clone(), "/tenants/acme/").unwrap();
    assert_eq!(acme.prefix().as_str(), "tenants/acme");

    let mut watch = acme.watch_tree("", WatchOptions::default()).await.unwrap();
    acme.put("a/b", b"1", PutOptions::default()).await.unwrap();
    assert_eq!(
        &shared.get("tenants/acme/a/b").await.unwrap().unwrap().value[..],
        b"1"
    );
    assert_eq!(acme.get("a/b").await.unwrap().unwrap().key.as_str(), "a/b");
    let keys = |pairs: Vec<kv_core::KvPair>| -> Vec<String> {
        pairs
            .into_iter()
            .map(|p| p.key.as_str().to_owned())
            .collect()
    };
    // The prefix key itself and the look-alike sibling `tenants/acme-x` are outside.
    assert_eq!(keys(acme.list("").await.unwrap()), ["a/b"]);
    let children = acme.list_children("").await.unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].key.as_str(), "a");
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!((event.kind, event.key.as_str()), (EventKind::Put, "a/b"));

    // Invalid scoped keys are refused before anything is sent.
    assert!(matches!(
        acme.put("", b"x", PutOptions::default()).await,
        Err(Error::InvalidKey { .. })
    ));
    // A key too long for the scope (the prefix takes its share of the limit) is refused with
    // the key as given.
    let long = "k".repeat(acme.capabilities().max_key_bytes + 1);
    assert!(matches!(
        acme.put(&long, b"x", PutOptions::default()).await,
        Err(Error::InvalidKey { key, .. }) if key.starts_with("kkk")
    ));

    let lock = acme
        .new_lock("leader", LockOptions::default())
        .await
        .unwrap();
    assert_eq!(lock.key().as_str(), "leader");
    let guard = lock.acquire().await.unwrap();
    assert_eq!(guard.key().as_str(), "leader");
    let outer = shared
        .new_lock("tenants/acme/leader", LockOptions::default())
        .await
        .unwrap();
    assert!(
        outer.try_acquire().await.unwrap().is_none(),
        "the same lock"
    );
    guard.release().await.unwrap();

    assert_eq!(acme.delete_tree("a").await.unwrap(), 1);
    acme.put("z", b"1", PutOptions::default()).await.unwrap();
    acme.put("y/1", b"1", PutOptions::default()).await.unwrap();
    // The whole scope, but not the value at the prefix key itself.
    assert_eq!(acme.delete_tree("").await.unwrap(), 2);
    assert!(acme.list("").await.unwrap().is_empty());
    for key in ["tenants/acme", "tenants/acme-x/k", "tenants/other/k", "top"] {
        assert!(shared.exists(key).await.unwrap(), "{key} was touched");
    }
}

#[tokio::test]
async fn the_metrics_hook_sees_every_call_and_its_outcome() {
    use std::sync::Mutex;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let store = kv_core::TracedStore::new(store()).with_metrics(move |call| {
        seen.lock()
            .unwrap()
            .push((call.backend, call.op, call.error.is_some()));
    });
    store.put("k", b"v", PutOptions::default()).await.unwrap();
    store.get("k").await.unwrap();
    store.get("a//b").await.unwrap_err();
    assert_eq!(
        *calls.lock().unwrap(),
        [
            ("memory", "put", false),
            ("memory", "get", false),
            ("memory", "get", true)
        ]
    );
}

/// `watch_json` decodes each put as `T`, passes deletes and the `Synced` marker with no value,
/// and reports a value that is not JSON for `T` as a `Decode` item, then goes on.
#[tokio::test]
async fn watch_json_decodes_puts_and_goes_on_after_a_bad_value() {
    let store = store();
    store
        .put_json("cfg/a", &Counter { n: 1 }, PutOptions::default())
        .await
        .unwrap();
    let mut events = store
        .watch_json::<Counter>("cfg", true, WatchOptions::default().synced())
        .await
        .unwrap();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(
        (first.kind, first.value),
        (EventKind::Put, Some(Counter { n: 1 }))
    );
    assert_eq!(first.key.as_str(), "cfg/a");
    let synced = events.next().await.unwrap().unwrap();
    assert_eq!((synced.kind, synced.value), (EventKind::Synced, None));
    store
        .put("cfg/a", b"not json", PutOptions::default())
        .await
        .unwrap();
    let bad = events.next().await.unwrap();
    assert!(
        matches!(&bad, Err(Error::Decode { key, .. }) if key == "cfg/a"),
        "{bad:?}"
    );
    let version = store
        .put_json("cfg/b", &Counter { n: 2 }, PutOptions::default())
        .await
        .unwrap();
    let next = events.next().await.unwrap().unwrap();
    assert_eq!(
        (next.value, next.version),
        (Some(Counter { n: 2 }), version)
    );
    store.delete("cfg/b").await.unwrap();
    let gone = events.next().await.unwrap().unwrap();
    assert_eq!((gone.kind, gone.value), (EventKind::Delete, None));
}
