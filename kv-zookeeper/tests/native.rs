//! The native layout (`layout=native`: a key's value is its own node's data): the whole
//! conformance suite (TTL cases gated: ZooKeeper hides TTLs from clients), and its own Java CLI on the
//! other side of kv, both directions, watches included.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

#[path = "support/backend.rs"]
mod backend;

conformance::conformance_tests!(backend::ZooKeeper {
    name: "zookeeper-native",
    options: "?layout=native",
});

use conformance::native::{self, zk_cli};
use kv_core::{EventKind, PutOptions, Store, WatchOptions};
use kv_zookeeper::ZooKeeperStore;

/// The last line of the CLI's output: a command's answer (`get` prints the data).
fn answer(output: &str) -> &str {
    output.trim_end().lines().last().unwrap_or("")
}

#[tokio::test]
async fn zkcli_and_kv_share_nodes() {
    let url = backend::server_url();
    let base = conformance::random_name();
    let store = ZooKeeperStore::open(&format!("{url}/{base}?layout=native"))
        .await
        .unwrap();
    let mut watch = store
        .watch_tree("app", WatchOptions::default())
        .await
        .unwrap();

    // kv → zkCli: the value is the node's data.
    store
        .put("app/color", b"blue", PutOptions::default())
        .await
        .unwrap();
    let node = |key: &str| format!("/{base}/{key}");
    assert_eq!(answer(&zk_cli(&url, &["get", &node("app/color")])), "blue");

    // zkCli → kv: a node it creates with data is a key; one without data is a path segment.
    zk_cli(&url, &["create", &node("app/size"), "10"]);
    zk_cli(&url, &["create", &node("app/segment")]);
    assert_eq!(
        &store.get("app/size").await.unwrap().unwrap().value[..],
        b"10"
    );
    assert!(!store.exists("app/segment").await.unwrap());
    zk_cli(&url, &["set", &node("app/color"), "red"]);
    assert_eq!(
        &store.get("app/color").await.unwrap().unwrap().value[..],
        b"red"
    );

    // A key with children keeps its node when its value is deleted; zkCli sees it emptied,
    // kv sees no key, and a value set by zkCli makes it a key again.
    store
        .put("app/dir", b"v", PutOptions::default())
        .await
        .unwrap();
    store
        .put("app/dir/x", b"x", PutOptions::default())
        .await
        .unwrap();
    assert!(store.delete("app/dir").await.unwrap());
    assert!(!store.exists("app/dir").await.unwrap());
    assert!(store.exists("app/dir/x").await.unwrap());
    assert_eq!(answer(&zk_cli(&url, &["ls", &node("app/dir")])), "[x]");
    zk_cli(&url, &["set", &node("app/dir"), "back"]);
    assert_eq!(
        &store.get("app/dir").await.unwrap().unwrap().value[..],
        b"back"
    );

    // kv's watch sees zkCli's writes and deletes.
    zk_cli(&url, &["delete", &node("app/size")]);
    let seen = native::events_until(&mut watch, |seen| {
        native::saw(seen, EventKind::Delete, "app/size")
    })
    .await;
    for (kind, key) in [
        (EventKind::Put, "app/color"),
        (EventKind::Put, "app/size"),
        (EventKind::Delete, "app/dir"),
    ] {
        assert!(native::saw(&seen, kind, key), "{kind:?} {key} in {seen:?}");
    }
    assert_eq!(
        native::keys(&store.list("").await.unwrap()),
        ["app/color", "app/dir", "app/dir/x"]
    );
    store.delete_tree("").await.unwrap();
}
