//! Key normalization, validation, segment-bounded prefixes, directories.

use kv_core::{Error, LockOptions, Precondition, PutOptions, WatchOptions};

use crate::support::{assert_put, keys, next_event};
use crate::{Ctx, Outcome, assert_err};

/// `/a/b/`, `a/b/` and `/a/b` all name the key `a/b`.
pub async fn keys_are_normalized(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let v1 = store
        .put("/a/b/", b"1", PutOptions::default())
        .await
        .unwrap();
    let pair = store
        .get("a/b")
        .await
        .unwrap()
        .expect("a/b after putting /a/b/");
    assert_eq!(
        (pair.key.as_str(), &pair.value[..], pair.version),
        ("a/b", &b"1"[..], v1)
    );
    assert!(store.exists("/a/b").await.unwrap());
    assert_eq!(keys(&store.list("/a/").await.unwrap()), vec!["a/b"]);
    let mut watch = store.watch("a/b/", WatchOptions::default()).await.unwrap();
    assert_put(&next_event(&mut watch, "watch of a/b/").await, "a/b", b"1");
    store.put("a/b", b"2", PutOptions::default()).await.unwrap();
    assert_put(&next_event(&mut watch, "watch of a/b/").await, "a/b", b"2");
    assert!(store.delete("/a/b").await.unwrap());
    assert!(store.get("a/b").await.unwrap().is_none());
    Outcome::Passed
}

/// Invalid keys and prefixes fail with `InvalidKey` on every call and change nothing.
pub async fn invalid_keys_change_nothing(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    store
        .put("keep", b"v", PutOptions::default())
        .await
        .unwrap();
    let too_long = "k".repeat(kv_core::MAX_KEY_BYTES + 1);
    let bad_keys = [
        "",
        "/",
        "a//b",
        "a/./b",
        "a/..",
        "..",
        "a\0b",
        "a\nb",
        "tab\there",
        "x\u{7f}",
        too_long.as_str(),
    ];
    for key in bad_keys {
        let shown = format!("{:?}", key.chars().take(20).collect::<String>());
        assert_err!(
            store.put(key, b"x", PutOptions::default()).await,
            Error::InvalidKey { .. },
            "put {shown}"
        );
        assert_err!(
            store.get(key).await,
            Error::InvalidKey { .. },
            "get {shown}"
        );
        assert_err!(
            store.exists(key).await,
            Error::InvalidKey { .. },
            "exists {shown}"
        );
        assert_err!(
            store.delete(key).await,
            Error::InvalidKey { .. },
            "delete {shown}"
        );
        assert_err!(
            store
                .atomic_put(key, b"x", Precondition::MustNotExist, PutOptions::default())
                .await,
            Error::InvalidKey { .. },
            "atomic_put {shown}"
        );
        assert_err!(
            store.atomic_delete(key, 1).await,
            Error::InvalidKey { .. },
            "atomic_delete {shown}"
        );
        assert_err!(
            store.watch(key, WatchOptions::default()).await,
            Error::InvalidKey { .. },
            "watch {shown}"
        );
        if ctx.caps().locks {
            assert_err!(
                store.new_lock(key, LockOptions::default()).await,
                Error::InvalidKey { .. },
                "new_lock {shown}"
            );
        }
        if !key.is_empty() && key != "/" {
            assert_err!(
                store.list(key).await,
                Error::InvalidKey { .. },
                "list {shown}"
            );
            assert_err!(
                store.list_children(key).await,
                Error::InvalidKey { .. },
                "list_children {shown}"
            );
            assert_err!(
                store.delete_tree(key).await,
                Error::InvalidKey { .. },
                "delete_tree {shown}"
            );
            assert_err!(
                store.watch_tree(key, WatchOptions::default()).await,
                Error::InvalidKey { .. },
                "watch_tree {shown}"
            );
        }
    }
    let all = store.list("").await.unwrap();
    assert_eq!(
        keys(&all),
        vec!["keep"],
        "invalid calls must change nothing"
    );
    let longest = "k".repeat(ctx.caps().max_key_bytes);
    store
        .put(&longest, b"ok", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        &store
            .get(&longest)
            .await
            .unwrap()
            .expect("longest key")
            .value[..],
        b"ok"
    );
    Outcome::Passed
}

/// Prefix `app` covers `app` and `app/...`, never `apple` or `app2/...`.
pub async fn prefixes_are_segment_bounded(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    for key in ["app", "app/x", "app/x/y", "apple", "app2/y", "ap"] {
        store
            .put(key, key.as_bytes(), PutOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(
        keys(&store.list("app").await.unwrap()),
        vec!["app", "app/x", "app/x/y"]
    );
    let children = store.list_children("app").await.unwrap();
    assert_eq!(
        children.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        vec!["app/x"]
    );
    let mut watch = store
        .watch_tree("app", WatchOptions::default())
        .await
        .unwrap();
    for key in ["app", "app/x", "app/x/y"] {
        assert_put(
            &next_event(&mut watch, "snapshot of app").await,
            key,
            key.as_bytes(),
        );
    }
    store
        .put("apple", b"2", PutOptions::default())
        .await
        .unwrap();
    store
        .put("app/z", b"z", PutOptions::default())
        .await
        .unwrap();
    assert_put(&next_event(&mut watch, "live app").await, "app/z", b"z");
    assert_eq!(store.delete_tree("app").await.unwrap(), 4);
    assert_eq!(
        keys(&store.list("").await.unwrap()),
        vec!["ap", "app2/y", "apple"]
    );
    Outcome::Passed
}

/// A key can hold a value and have children; each is independent of the other.
pub async fn keys_hold_values_and_children(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    store
        .put("dir", b"parent", PutOptions::default())
        .await
        .unwrap();
    store
        .put("dir/child", b"child", PutOptions::default())
        .await
        .unwrap();
    store
        .put("dir/child/leaf", b"leaf", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        &store.get("dir").await.unwrap().expect("dir").value[..],
        b"parent"
    );
    assert_eq!(
        &store
            .get("dir/child")
            .await
            .unwrap()
            .expect("dir/child")
            .value[..],
        b"child"
    );
    let children = store.list_children("dir").await.unwrap();
    assert_eq!(children.len(), 1);
    assert!(
        children[0].has_value && children[0].has_children,
        "{children:?}"
    );
    assert!(store.delete("dir/child").await.unwrap());
    assert!(
        store.exists("dir/child/leaf").await.unwrap(),
        "deleting a key keeps its children"
    );
    assert!(store.delete("dir").await.unwrap());
    assert_eq!(
        keys(&store.list("dir").await.unwrap()),
        vec!["dir/child/leaf"]
    );
    Outcome::Passed
}

/// Path segments that were never put are not keys.
pub async fn implicit_parents_are_not_keys(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    store
        .put("a/b/c", b"deep", PutOptions::default())
        .await
        .unwrap();
    for parent in ["a", "a/b"] {
        assert!(store.get(parent).await.unwrap().is_none(), "get {parent}");
        assert!(!store.exists(parent).await.unwrap(), "exists {parent}");
        assert!(!store.delete(parent).await.unwrap(), "delete {parent}");
    }
    assert_eq!(keys(&store.list("").await.unwrap()), vec!["a/b/c"]);
    let children = store.list_children("").await.unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].key.as_str(), "a");
    assert!(
        !children[0].has_value && children[0].has_children,
        "{children:?}"
    );
    assert_err!(
        store.atomic_delete("a", 1).await,
        Error::Conflict { .. },
        "atomic_delete of an implicit parent"
    );
    store
        .atomic_put(
            "a",
            b"now a key",
            Precondition::MustNotExist,
            PutOptions::default(),
        )
        .await
        .expect("an implicit parent does not exist, so MustNotExist holds");
    store.delete("a/b/c").await.unwrap();
    assert_eq!(keys(&store.list("").await.unwrap()), vec!["a"]);
    assert!(store.list_children("a").await.unwrap().is_empty());
    Outcome::Passed
}
