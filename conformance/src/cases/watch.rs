//! Watches: snapshot then live, no gap, order, deletes, errors, lag, history.

use std::collections::BTreeMap;
use std::time::Duration;

use kv_core::{Error, EventKind, PutOptions, WatchOptions};

use crate::support::{QUIET, assert_delete, assert_put, expect_quiet, next_event, until_error};
use crate::{Ctx, Outcome, assert_err};

/// A watch starts with the key's current state, then sees every change.
pub async fn watch_starts_with_the_current_state(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let v1 = store.put("k", b"1", PutOptions::default()).await.unwrap();
    let mut watch = store.watch("k", WatchOptions::default()).await.unwrap();
    let first = next_event(&mut watch, "initial state").await;
    assert_put(&first, "k", b"1");
    assert_eq!(first.version, v1);
    store
        .put("k/child", b"not me", PutOptions::default())
        .await
        .unwrap();
    let v2 = store.put("k", b"2", PutOptions::default()).await.unwrap();
    let second = next_event(&mut watch, "update").await;
    assert_put(&second, "k", b"2");
    assert_eq!(second.version, v2);
    store.delete("k").await.unwrap();
    let deleted = next_event(&mut watch, "delete").await;
    assert_delete(&deleted, "k");
    assert!(deleted.version > v2, "a delete has a greater version");
    store.put("k", b"3", PutOptions::default()).await.unwrap();
    assert_put(&next_event(&mut watch, "re-create").await, "k", b"3");
    Outcome::Passed
}

/// Watching a key or prefix that does not exist yet works.
pub async fn watch_of_a_missing_key(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let mut key_watch = store
        .watch("not/yet", WatchOptions::default())
        .await
        .unwrap();
    let mut tree_watch = store
        .watch_tree("nothing", WatchOptions::default())
        .await
        .unwrap();
    expect_quiet(&mut key_watch, "watch of a missing key").await;
    expect_quiet(&mut tree_watch, "watch of a missing prefix").await;
    store
        .put("not/yet", b"now", PutOptions::default())
        .await
        .unwrap();
    store
        .put("nothing/here", b"h", PutOptions::default())
        .await
        .unwrap();
    assert_put(
        &next_event(&mut key_watch, "key created").await,
        "not/yet",
        b"now",
    );
    assert_put(
        &next_event(&mut tree_watch, "prefix created").await,
        "nothing/here",
        b"h",
    );
    Outcome::Passed
}

/// Opening a tree watch while another client writes: the initial state plus the live events
/// reproduce exactly what the store holds afterwards.
pub async fn watch_tree_has_no_gap(ctx: Ctx) -> Outcome {
    let writer_store = ctx.another().await;
    store_initial(&writer_store).await;
    let writer = tokio::spawn(async move {
        for i in 0..200u32 {
            let key = format!("g/{}", i % 10);
            if i % 7 == 3 {
                writer_store.delete(&key).await.unwrap();
            } else {
                writer_store
                    .put(&key, i.to_string().as_bytes(), PutOptions::default())
                    .await
                    .unwrap();
            }
            tokio::task::yield_now().await;
        }
        writer_store
            .put("g/zz-done", b"", PutOptions::default())
            .await
            .unwrap();
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let store = ctx.store();
    let mut watch = store
        .watch_tree("g", WatchOptions::default().buffer(10_000))
        .await
        .unwrap();
    let mut seen: BTreeMap<String, (Vec<u8>, u64)> = BTreeMap::new();
    let mut last_version: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let event = next_event(&mut watch, "no-gap watch").await;
        let key = event.key.to_string();
        if let Some(last) = last_version.get(&key) {
            assert!(
                event.version > *last,
                "events of {key} out of order: {} after {last}",
                event.version
            );
        }
        last_version.insert(key.clone(), event.version);
        if key == "g/zz-done" {
            break;
        }
        match event.kind {
            EventKind::Put => seen.insert(key, (event.value.to_vec(), event.version)),
            EventKind::Delete => seen.remove(&key),
            EventKind::Synced => panic!("Synced without WatchOptions::synced: {event:?}"),
        };
    }
    writer.await.unwrap();
    let actual: BTreeMap<String, (Vec<u8>, u64)> = store
        .list("g")
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.key.as_str() != "g/zz-done")
        .map(|p| (p.key.to_string(), (p.value.to_vec(), p.version)))
        .collect();
    assert_eq!(
        seen, actual,
        "the watch's view must equal the store's state"
    );
    Outcome::Passed
}

async fn store_initial(store: &std::sync::Arc<dyn kv_core::Store>) {
    for i in 0..10 {
        store
            .put(&format!("g/{i}"), b"initial", PutOptions::default())
            .await
            .unwrap();
    }
}

/// Events of one key arrive in version order; without coalescing, every version arrives.
pub async fn watch_events_arrive_in_version_order(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let mut watch = store.watch("seq", WatchOptions::default()).await.unwrap();
    let writer = ctx.another().await;
    let mut versions = Vec::new();
    for i in 0..50u32 {
        versions.push(
            writer
                .put("seq", i.to_string().as_bytes(), PutOptions::default())
                .await
                .unwrap(),
        );
    }
    let mut last = 0;
    let mut values = Vec::new();
    loop {
        let event = next_event(&mut watch, "sequence").await;
        assert!(
            event.version > last,
            "version {} after {last}",
            event.version
        );
        last = event.version;
        values.push(String::from_utf8(event.value.to_vec()).unwrap());
        if event.version == versions[49] {
            assert_eq!(values.last().map(String::as_str), Some("49"));
            break;
        }
    }
    if !ctx.caps().watch_coalesces {
        let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(values, expected, "every version is delivered");
    }
    Outcome::Passed
}

/// Deletes, atomic deletes and delete_tree are Delete events on a tree watch.
pub async fn watch_tree_reports_deletes(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    for key in ["w/a", "w/b", "w/c/d", "w/c/e"] {
        store.put(key, b"v", PutOptions::default()).await.unwrap();
    }
    let mut watch = store
        .watch_tree("w", WatchOptions::default())
        .await
        .unwrap();
    for key in ["w/a", "w/b", "w/c/d", "w/c/e"] {
        assert_put(&next_event(&mut watch, "snapshot").await, key, b"v");
    }
    store.delete("w/a").await.unwrap();
    assert_delete(&next_event(&mut watch, "delete").await, "w/a");
    let version = store.get("w/b").await.unwrap().expect("w/b").version;
    store.atomic_delete("w/b", version).await.unwrap();
    assert_delete(&next_event(&mut watch, "atomic delete").await, "w/b");
    store.delete_tree("w/c").await.unwrap();
    let mut deleted = [
        next_event(&mut watch, "tree delete").await,
        next_event(&mut watch, "tree delete").await,
    ];
    deleted.sort_by(|a, b| a.key.cmp(&b.key));
    assert_delete(&deleted[0], "w/c/d");
    assert_delete(&deleted[1], "w/c/e");
    expect_quiet(&mut watch, "nothing else was deleted").await;
    Outcome::Passed
}

/// Closing the handle ends its watches with `Closed`, never silently.
pub async fn watch_ends_with_an_error_on_close(ctx: Ctx) -> Outcome {
    let other = ctx.another().await;
    let mut key_watch = other.watch("k", WatchOptions::default()).await.unwrap();
    let mut tree_watch = other.watch_tree("", WatchOptions::default()).await.unwrap();
    ctx.store()
        .put("k", b"v", PutOptions::default())
        .await
        .unwrap();
    assert_put(&next_event(&mut key_watch, "before close").await, "k", b"v");
    other.close().await.unwrap();
    for (name, watch) in [
        ("key watch", &mut key_watch),
        ("tree watch", &mut tree_watch),
    ] {
        let (_, error) = until_error(watch, name).await;
        assert!(
            matches!(error, Error::Closed),
            "{name} ended with {error:?}, expected Closed"
        );
        assert!(
            tokio::time::timeout(QUIET, futures::StreamExt::next(watch))
                .await
                .is_ok_and(|item| item.is_none()),
            "{name} ends after its error"
        );
    }
    assert_err!(
        other.watch("k", WatchOptions::default()).await,
        Error::Closed,
        "watch on a closed handle"
    );
    Outcome::Passed
}

/// A watcher that does not read falls behind its buffer and gets `WatchLagged`; writers never
/// wait for it.
pub async fn slow_watchers_lag_and_never_block_writers(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let mut slow = store
        .watch_tree("lag", WatchOptions::default().buffer(4))
        .await
        .unwrap();
    let writes = async {
        for i in 0..200u32 {
            store
                .put(&format!("lag/{i:03}"), b"v", PutOptions::default())
                .await
                .unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), writes)
        .await
        .expect("writers must not wait for a slow watcher");
    tokio::time::sleep(QUIET).await;
    let (events, error) = until_error(&mut slow, "slow watcher").await;
    assert!(
        matches!(error, Error::WatchLagged { .. }),
        "expected WatchLagged, got {error:?}"
    );
    assert!(
        events.len() < 200,
        "a lagged watch cannot have delivered everything"
    );
    assert!(
        tokio::time::timeout(QUIET, futures::StreamExt::next(&mut slow))
            .await
            .is_ok_and(|item| item.is_none()),
        "the stream ends after WatchLagged"
    );
    assert_err!(
        store.watch("k", WatchOptions::default().buffer(0)).await,
        Error::InvalidArgument { .. },
        "a zero buffer"
    );
    Outcome::Passed
}

/// `since` resumes after a version from the backend's history, without the initial state.
pub async fn watch_since_resumes_from_history(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let v1 = store.put("h/a", b"1", PutOptions::default()).await.unwrap();
    if !ctx.caps().watch_history {
        assert_err!(
            store
                .watch_tree("h", WatchOptions::default().since(v1))
                .await,
            Error::Unsupported {
                capability: "watch_history",
                ..
            },
            "watch_tree with since"
        );
        assert_err!(
            store.watch("h/a", WatchOptions::default().since(v1)).await,
            Error::Unsupported {
                capability: "watch_history",
                ..
            },
            "watch with since"
        );
        return Outcome::Gated("watch_history");
    }
    let v2 = store.put("h/b", b"2", PutOptions::default()).await.unwrap();
    let v3 = store.put("h/a", b"3", PutOptions::default()).await.unwrap();
    store
        .put("elsewhere", b"x", PutOptions::default())
        .await
        .unwrap();
    store.delete("h/b").await.unwrap();
    let mut tree = store
        .watch_tree("h", WatchOptions::default().since(v1))
        .await
        .unwrap();
    let event = next_event(&mut tree, "history").await;
    assert_put(&event, "h/b", b"2");
    assert_eq!(event.version, v2);
    let event = next_event(&mut tree, "history").await;
    assert_put(&event, "h/a", b"3");
    assert_eq!(event.version, v3);
    assert_delete(&next_event(&mut tree, "history").await, "h/b");
    let mut key = store
        .watch("h/a", WatchOptions::default().since(v1))
        .await
        .unwrap();
    assert_eq!(next_event(&mut key, "key history").await.version, v3);
    let latest = store.put("h/c", b"4", PutOptions::default()).await.unwrap();
    assert_put(
        &next_event(&mut tree, "live after history").await,
        "h/c",
        b"4",
    );
    let mut from_now = store
        .watch_tree("h", WatchOptions::default().since(latest))
        .await
        .unwrap();
    expect_quiet(&mut from_now, "nothing after the latest version").await;
    store.put("h/d", b"5", PutOptions::default()).await.unwrap();
    assert_put(&next_event(&mut from_now, "live").await, "h/d", b"5");
    expect_quiet(&mut key, "key watch ignores other keys").await;
    Outcome::Passed
}

/// With `WatchOptions::synced`, the initial state is followed by one `Synced` event (key: the
/// watched key or prefix, version: the highest initial one, 0 for none), then live changes;
/// a `since` watch has no initial state and no marker.
pub async fn watch_marks_the_end_of_the_initial_state(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let put = PutOptions::default;
    let v1 = store.put("s/a", b"1", put()).await.unwrap();
    let v2 = store.put("s/b/c", b"2", put()).await.unwrap();
    let synced = || WatchOptions::default().synced();
    let mut tree = store.watch_tree("s", synced()).await.unwrap();
    let mut initial = Vec::new();
    for _ in 0..2 {
        let event = next_event(&mut tree, "initial state").await;
        assert_eq!(event.kind, EventKind::Put, "{event:?}");
        initial.push(event.key.to_string());
    }
    initial.sort();
    assert_eq!(initial, ["s/a", "s/b/c"]);
    let marker = next_event(&mut tree, "the Synced marker").await;
    assert_eq!(
        (marker.kind, marker.key.as_str(), marker.version),
        (EventKind::Synced, "s", v1.max(v2))
    );
    let v3 = store.put("s/a", b"3", put()).await.unwrap();
    assert_put(
        &next_event(&mut tree, "live after the marker").await,
        "s/a",
        b"3",
    );
    let _ = v3;

    let mut empty = store.watch("s/none", synced()).await.unwrap();
    let marker = next_event(&mut empty, "the marker of an empty watch").await;
    assert_eq!(
        (marker.kind, marker.key.as_str(), marker.version),
        (EventKind::Synced, "s/none", 0)
    );
    let mut all = store.watch_tree("", synced()).await.unwrap();
    loop {
        let event = next_event(&mut all, "the whole store's marker").await;
        if event.kind == EventKind::Synced {
            assert_eq!(
                event.key.as_str(),
                "",
                "the whole store's marker has the empty key"
            );
            break;
        }
    }

    if ctx.caps().watch_history {
        let mut resumed = store.watch("s/a", synced().since(v3)).await.unwrap();
        store.put("s/a", b"4", put()).await.unwrap();
        assert_put(
            &next_event(&mut resumed, "since: no marker").await,
            "s/a",
            b"4",
        );
    }
    Outcome::Passed
}
