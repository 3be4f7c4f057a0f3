//! Directory listings larger than one page, against the harness's etcd.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use conformance::servers::{EtcdProcess, Provision, provision};
use kv_core::{PutOptions, Store};
use kv_etcd::EtcdStore;

#[tokio::test]
async fn list_children_skips_big_subtrees_and_misses_nothing() {
    let Provision::Ready(server) = provision(&EtcdProcess) else {
        return;
    };
    let store = EtcdStore::open(&format!("{}/{}", server.url, conformance::random_name()))
        .await
        .unwrap();
    // A child whose subtree spans more than a page, with siblings before, inside and after it
    // in byte order (`big-x` < `big/...` < `big0`).
    for i in 0..1500 {
        store
            .put(&format!("d/big/{i:05}"), b"", PutOptions::default())
            .await
            .unwrap();
    }
    for key in ["d/a", "d/big", "d/big-x", "d/big0", "d/c/deep/er", "d/z"] {
        store.put(key, b"", PutOptions::default()).await.unwrap();
    }
    let listed: Vec<(String, bool, bool)> = store
        .list_children("d")
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.key.to_string(), c.has_value, c.has_children))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("d/a".into(), true, false),
            ("d/big".into(), true, true),
            ("d/big-x".into(), true, false),
            ("d/big0".into(), true, false),
            ("d/c".into(), false, true),
            ("d/z".into(), true, false),
        ]
    );
    assert_eq!(
        store.list("d/big").await.unwrap().len(),
        1501,
        "list pages through everything"
    );
}
