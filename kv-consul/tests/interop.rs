//! kv and Consul's own `consul kv` on the same keys, both directions, watches included.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::time::Duration;

use conformance::native;
use conformance::servers::{ConsulProcess, Provision, provision};
use kv_consul::ConsulStore;
use kv_core::{EventKind, PutOptions, Store, WatchOptions};

fn server_url() -> String {
    match provision(&ConsulProcess) {
        Provision::Ready(server) => server.url.clone(),
        Provision::Skipped(message) => panic!("{message}"),
    }
}

#[tokio::test]
async fn consul_kv_and_kv_share_keys() {
    let url = server_url();
    let root = conformance::random_name();
    let store = ConsulStore::open(&format!("{url}/{root}")).await.unwrap();
    let mut watch = store
        .watch_tree("app", WatchOptions::default())
        .await
        .unwrap();

    // kv → consul kv.
    store
        .put("app/color", b"blue", PutOptions::default())
        .await
        .unwrap();
    let got = native::consul(&url, &["kv", "get"], &[&format!("{root}/app/color")]);
    assert_eq!(got, b"blue\n");

    // consul kv → kv, Flags included: a key another tool wrote with Flags is a plain key.
    native::consul(
        &url,
        &["kv", "put"],
        &["-flags=42", &format!("{root}/app/flagged"), "v"],
    );
    native::consul(&url, &["kv", "put"], &[&format!("{root}/app/size"), "10"]);
    assert_eq!(
        &store.get("app/flagged").await.unwrap().unwrap().value[..],
        b"v"
    );
    assert!(store.exists("app/size").await.unwrap());
    assert_eq!(
        native::keys(&store.list("app").await.unwrap()),
        ["app/color", "app/flagged", "app/size"]
    );

    // kv's watch sees the native writes and a native delete.
    native::consul(&url, &["kv", "delete"], &[&format!("{root}/app/size")]);
    let seen = native::events_until(&mut watch, |seen| seen.len() == 4).await;
    assert_eq!(
        (seen[0].0, seen[0].1.as_str()),
        (EventKind::Put, "app/color")
    );
    assert!(
        native::saw(&seen, EventKind::Put, "app/flagged"),
        "{seen:?}"
    );
    assert_eq!(
        (seen[3].0, seen[3].1.as_str()),
        (EventKind::Delete, "app/size")
    );

    // A kv TTL key reads as a plain value in Consul until Consul deletes it.
    store
        .put(
            "app/ttl",
            b"t",
            PutOptions::default().ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let got = native::consul(&url, &["kv", "get"], &[&format!("{root}/app/ttl")]);
    assert_eq!(got, b"t\n");
    store.delete_tree("").await.unwrap();
}
