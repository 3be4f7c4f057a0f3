//! What is specific to kv-sled: durability across restarts, one process per store, layout.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kv_core::{Error, LockOptions, Precondition, PutOptions, Store, WatchOptions};
use kv_sled::SledStore;

fn url(dir: &tempfile::TempDir) -> String {
    format!("sled://{}", dir.path().display())
}

#[tokio::test]
async fn data_survives_a_restart_and_versions_stay_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let (v_color, v_gone, token) = {
        let store = SledStore::open(&url(&dir)).unwrap();
        let v_color = store
            .put("app/color", b"blue", PutOptions::default())
            .await
            .unwrap();
        store
            .put("app/size", b"\xff\x00binary", PutOptions::default())
            .await
            .unwrap();
        store
            .put(
                "app/brief",
                b"x",
                PutOptions::default().ttl(Duration::from_millis(300)),
            )
            .await
            .unwrap();
        store
            .put(
                "app/lasting",
                b"y",
                PutOptions::default().ttl(Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        let v_gone = store
            .put("app/gone", b"z", PutOptions::default())
            .await
            .unwrap();
        store.delete("app/gone").await.unwrap();
        store
            .put("tree/a", b"1", PutOptions::default())
            .await
            .unwrap();
        store
            .put("tree/b", b"2", PutOptions::default())
            .await
            .unwrap();
        assert_eq!(store.delete_tree("tree").await.unwrap(), 2);
        let lock = store
            .new_lock("leader", LockOptions::default())
            .await
            .unwrap();
        let token = lock.acquire().await.unwrap().fencing_token();
        store.close().await.unwrap();
        (v_color, v_gone, token)
    };
    tokio::time::sleep(Duration::from_millis(400)).await;

    let store = SledStore::open(&url(&dir)).unwrap();
    let color = store
        .get("app/color")
        .await
        .unwrap()
        .expect("color survives");
    assert_eq!((&color.value[..], color.version), (&b"blue"[..], v_color));
    assert_eq!(
        &store.get("app/size").await.unwrap().unwrap().value[..],
        b"\xff\x00binary"
    );
    assert!(
        store.get("app/gone").await.unwrap().is_none(),
        "deletes are durable"
    );
    assert!(
        store.list("tree").await.unwrap().is_empty(),
        "delete_tree is durable"
    );
    assert!(
        store.get("app/brief").await.unwrap().is_none(),
        "a TTL that passed while closed has expired"
    );
    assert!(
        store.exists("app/lasting").await.unwrap(),
        "a TTL still running survives"
    );
    let next = store
        .put("app/color", b"green", PutOptions::default())
        .await
        .unwrap();
    assert!(
        next > token && next > v_gone,
        "versions continue after the last one ({next} after {token})"
    );
    let lock = store
        .new_lock("leader", LockOptions::default())
        .await
        .unwrap();
    assert!(
        lock.acquire().await.unwrap().fencing_token() > next,
        "fencing tokens continue too"
    );
    store
        .atomic_put(
            "app/color",
            b"cas",
            Precondition::Version(next),
            PutOptions::default(),
        )
        .await
        .expect("CAS on a recovered version");
    match store
        .watch("app/color", WatchOptions::default().since(v_color))
        .await
    {
        Err(Error::Compacted { .. }) => {}
        other => panic!(
            "history from before the restart must be Compacted, got {:?}",
            other.map(|_| ())
        ),
    }
}

#[tokio::test]
async fn handles_on_one_path_share_data_watches_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let a = SledStore::open(&url(&dir)).unwrap();
    let b = SledStore::open(&format!("sled://{}/", dir.path().join(".").display())).unwrap();
    let mut watch = b.watch("k", WatchOptions::default()).await.unwrap();
    a.put("k", b"v", PutOptions::default()).await.unwrap();
    assert_eq!(&watch.next().await.unwrap().unwrap().value[..], b"v");
    let guard = a
        .new_lock("l", LockOptions::default())
        .await
        .unwrap()
        .acquire()
        .await
        .unwrap();
    assert!(
        b.new_lock("l", LockOptions::default())
            .await
            .unwrap()
            .try_acquire()
            .await
            .unwrap()
            .is_none()
    );
    drop(guard);
    assert!(a.capabilities().locks_process_local);
    assert_eq!(a.capabilities().backend, "sled");
}

#[tokio::test]
async fn sync_mode_writes_through() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&format!("{}?sync=true", url(&dir))).unwrap();
    store.put("k", b"v", PutOptions::default()).await.unwrap();
    drop(store);
    let store = SledStore::open(&url(&dir)).unwrap();
    assert!(store.exists("k").await.unwrap());
}

/// Environment variable that turns [`child_opens_a_locked_store`] into the second process.
const CHILD_PATH: &str = "KV_SLED_TEST_LOCKED_PATH";

#[test]
fn a_second_process_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SledStore::open(&url(&dir)).unwrap();
    let started = Instant::now();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_opens_a_locked_store",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_PATH, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("CHILD SAW: backend unavailable"),
        "{stdout}"
    );
    assert!(stdout.contains("another process"), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the child must not hang"
    );
}

/// Run by [`a_second_process_gets_a_clear_error`] in a child process; does nothing otherwise.
#[test]
fn child_opens_a_locked_store() {
    let Some(path) = std::env::var_os(CHILD_PATH) else {
        return;
    };
    let url = format!("sled://{}", std::path::Path::new(&path).display());
    match SledStore::open(&url) {
        Err(error @ Error::Unavailable { .. }) => println!("CHILD SAW: {error}"),
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_foreign_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert(b"mlayout", b"99").unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(&url(&dir)).unwrap_err();
    assert!(err.to_string().contains("layout"), "{err}");
}

/// Typed options open the same store a URL names, with their settings applied.
#[tokio::test]
async fn options_open_the_store_a_url_names() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = kv_sled::SledOptions::new(dir.path())
            .max_value_bytes(4)
            .open()
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
    let store = SledStore::open(&url(&dir)).unwrap();
    assert_eq!(&store.get("k").await.unwrap().unwrap().value[..], b"1234");
}
