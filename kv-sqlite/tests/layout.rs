//! A database file written before leases (layout 1 without `kv_data.lease`) opens, keeps its
//! data, and takes leases; typed options open the same file a URL names.
#![allow(clippy::unwrap_used)] // a failed step panics with its context

use std::time::Duration;

use kv_core::{PutOptions, Store};
use kv_sqlite::SqliteStore;

/// The schema kv-sqlite created before leases.
const BEFORE_LEASES: &str = "
CREATE TABLE kv_meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE kv_data(
    key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL, expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX kv_data_expiry ON kv_data(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE kv_log(
    revision INTEGER PRIMARY KEY, key TEXT NOT NULL, kind INTEGER NOT NULL, value BLOB
);
CREATE TABLE kv_locks(
    key TEXT NOT NULL, subtree INTEGER NOT NULL, token INTEGER NOT NULL, value BLOB NOT NULL,
    expires_at INTEGER NOT NULL, PRIMARY KEY(key, subtree)
) WITHOUT ROWID;
INSERT INTO kv_meta VALUES ('floor', 0), ('layout', 1);
INSERT INTO kv_data VALUES ('app/color', x'626c7565', 1, NULL);
INSERT INTO kv_log VALUES (1, 'app/color', 0, x'626c7565');
";

#[tokio::test]
async fn a_file_from_before_leases_opens_and_takes_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(BEFORE_LEASES)
        .unwrap();
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let pair = store.get("app/color").await.unwrap().unwrap();
    assert_eq!((&pair.value[..], pair.version), (&b"blue"[..], 1));
    let lease = store.grant(Duration::from_secs(30)).await.unwrap();
    let version = store
        .put("app/node", b"up", PutOptions::default().lease(&lease))
        .await
        .unwrap();
    assert!(version > 1);
    lease.revoke().await.unwrap();
    assert!(!store.exists("app/node").await.unwrap());
    assert!(store.exists("app/color").await.unwrap());
    store.close().await.unwrap();
    // A second open finds the column there already.
    let again = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(again.exists("app/color").await.unwrap());
}

/// Typed options open the same database a URL names, with their settings applied.
#[tokio::test]
async fn options_open_the_store_a_url_names() {
    use kv_core::{Error, PutOptions, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.db");
    {
        let store = kv_sqlite::SqliteOptions::new(&path)
            .max_value_bytes(4)
            .open()
            .await
            .unwrap();
        store
            .put("k", b"1234", PutOptions::default())
            .await
            .unwrap();
        let error = store
            .put("k", b"12345", PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(error, Error::ValueTooLarge { .. }), "{error:?}");
        store.close().await.unwrap();
    }
    let store = kv_sqlite::SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(&store.get("k").await.unwrap().unwrap().value[..], b"1234");
}
