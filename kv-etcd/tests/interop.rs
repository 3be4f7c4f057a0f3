//! kv and `etcdctl` on the same keys, both directions: with a root, without one (the whole
//! keyspace, libkv's layout), and with `layout=slash` (kv's layout before 0.2).
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use conformance::native::{self, etcdctl};
use conformance::servers::{EtcdProcess, Launcher, opted_out};
use kv_core::{Error, EventKind, LockOptions, PutOptions, Store, WatchOptions};
use kv_etcd::EtcdStore;

fn value(url: &str, key: &str) -> Vec<u8> {
    etcdctl(url, &["get", "--print-value-only", "--", key])
}

#[tokio::test]
async fn etcdctl_and_kv_share_keys() {
    if opted_out("etcd", "etcdctl interop test") {
        return;
    }
    // A server of its own: a store without a root is the whole keyspace.
    let server = EtcdProcess.start().unwrap();
    let url = server.url.clone();
    let store = EtcdStore::open(&url).await.unwrap();
    let mut watch = store.watch_tree("", WatchOptions::default()).await.unwrap();

    // kv → etcdctl: no leading `/`.
    store
        .put("app/color", b"blue", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(value(&url, "app/color"), b"blue\n");
    assert_eq!(value(&url, "/app/color"), b"");

    // etcdctl → kv; etcd keys that are not kv keys are not the store's.
    etcdctl(&url, &["put", "app/size", "10"]);
    etcdctl(&url, &["put", "--", "/legacy", "x"]);
    etcdctl(&url, &["put", "a//b", "y"]);
    assert_eq!(
        &store.get("app/size").await.unwrap().unwrap().value[..],
        b"10"
    );
    let guard = store
        .new_lock("app", LockOptions::default())
        .await
        .unwrap()
        .acquire()
        .await
        .unwrap();
    assert_eq!(
        native::keys(&store.list("").await.unwrap()),
        ["app/color", "app/size"],
        "no lock, no foreign key"
    );
    let children: Vec<String> = store
        .list_children("")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.key.to_string())
        .collect();
    assert_eq!(children, ["app"]);
    assert!(matches!(
        store.get("!kv/key/app").await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        store.delete_tree("!kv").await,
        Err(Error::InvalidKey { .. })
    ));

    // kv's watch sees etcdctl's writes and deletes, and nothing of the lock or foreign keys.
    etcdctl(&url, &["del", "app/size"]);
    let seen = native::events_until(&mut watch, |seen| seen.len() == 3).await;
    let seen: Vec<(EventKind, &str)> = seen.iter().map(|(k, key, _)| (*k, key.as_str())).collect();
    assert_eq!(
        seen,
        [
            (EventKind::Put, "app/color"),
            (EventKind::Put, "app/size"),
            (EventKind::Delete, "app/size"),
        ]
    );

    // Clearing the whole store leaves the lock area alone: the holder still holds.
    store.delete_tree("").await.unwrap();
    assert!(store.list("").await.unwrap().is_empty());
    assert!(!etcdctl(&url, &["get", "--prefix", "--keys-only", "!kv/"]).is_empty());
    assert!(!guard.lost().is_cancelled());
    guard.release().await.unwrap();

    // With a root, `root/key`; with `layout=slash`, `/key`.
    let rooted = EtcdStore::open(&format!("{url}/r")).await.unwrap();
    rooted
        .put("a/b", b"1", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(value(&url, "r/a/b"), b"1\n");
    let slash = EtcdStore::open(&format!("{url}?layout=slash"))
        .await
        .unwrap();
    slash.put("a/b", b"2", PutOptions::default()).await.unwrap();
    assert_eq!(value(&url, "/a/b"), b"2\n");
    etcdctl(&url, &["put", "/a/c", "3"]);
    assert_eq!(&slash.get("a/c").await.unwrap().unwrap().value[..], b"3");
    assert!(matches!(
        EtcdStore::open(&format!("{url}?layout=flat")).await,
        Err(Error::InvalidUrl { .. })
    ));
}
