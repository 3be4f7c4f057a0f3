//! Listing and deleting.

use kv_core::{EventKind, PutOptions, WatchOptions};

use crate::support::{keys, next_event};
use crate::{Ctx, Outcome};

/// `list` returns every covered key, sorted by the key's bytes; a missing prefix lists empty.
pub async fn list_is_sorted_and_complete(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    // Byte order and segment order differ: '-' and '.' sort before '/'.
    let written = [
        "a/c", "a", "a-b", "a.b/x", "a/b/z", "b", "a/b", "A", "a/b-1",
    ];
    for key in written {
        store
            .put(key, key.as_bytes(), PutOptions::default())
            .await
            .unwrap();
    }
    let mut expected: Vec<&str> = written.to_vec();
    expected.sort();
    let all = store.list("").await.unwrap();
    assert_eq!(
        keys(&all),
        expected,
        "list of the root is every key in byte order"
    );
    for pair in &all {
        assert_eq!(
            &pair.value[..],
            pair.key.as_str().as_bytes(),
            "list returns values"
        );
    }
    assert_eq!(
        keys(&store.list("a").await.unwrap()),
        vec!["a", "a/b", "a/b-1", "a/b/z", "a/c"]
    );
    assert_eq!(
        keys(&store.list("a/b").await.unwrap()),
        vec!["a/b", "a/b/z"]
    );
    assert!(store.list("missing").await.unwrap().is_empty());
    assert!(store.list("a/c/d").await.unwrap().is_empty());
    let many: Vec<String> = (0..250).map(|i| format!("many/{i:04}")).collect();
    for key in &many {
        store.put(key, b"", PutOptions::default()).await.unwrap();
    }
    let listed = store.list("many").await.unwrap();
    assert_eq!(
        keys(&listed),
        many.iter().map(String::as_str).collect::<Vec<_>>(),
        "250 keys, none lost"
    );
    Outcome::Passed
}

/// `list_children` lists direct children as keys and child prefixes, sorted.
pub async fn list_children_is_a_directory_listing(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    for key in [
        "d",
        "d/file",
        "d/dir/x",
        "d/dir/y/z",
        "d/both",
        "d/both/inner",
        "d-sibling",
        "e",
    ] {
        store.put(key, b"v", PutOptions::default()).await.unwrap();
    }
    let listing: Vec<(String, bool, bool)> = store
        .list_children("d")
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.key.to_string(), c.has_value, c.has_children))
        .collect();
    assert_eq!(
        listing,
        vec![
            ("d/both".to_string(), true, true),
            ("d/dir".to_string(), false, true),
            ("d/file".to_string(), true, false),
        ]
    );
    let root: Vec<String> = store
        .list_children("")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.key.to_string())
        .collect();
    assert_eq!(root, vec!["d", "d-sibling", "e"]);
    assert!(store.list_children("d/file").await.unwrap().is_empty());
    assert!(
        store
            .list_children("nothing/here")
            .await
            .unwrap()
            .is_empty()
    );
    Outcome::Passed
}

/// `delete` removes one key, not its children, and says whether it existed.
pub async fn delete_removes_one_key(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    store.put("k", b"v", PutOptions::default()).await.unwrap();
    store
        .put("k/child", b"c", PutOptions::default())
        .await
        .unwrap();
    assert!(store.delete("k").await.unwrap());
    assert!(
        !store.delete("k").await.unwrap(),
        "a second delete finds nothing"
    );
    assert!(!store.delete("never").await.unwrap());
    assert!(store.get("k").await.unwrap().is_none());
    assert_eq!(keys(&store.list("").await.unwrap()), vec!["k/child"]);
    Outcome::Passed
}

/// `delete_tree` removes the prefix key and everything below it, nothing else.
pub async fn delete_tree_removes_the_subtree(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    for key in ["t", "t/a", "t/a/b", "t/c", "tt", "t-x", "u/t"] {
        store.put(key, b"v", PutOptions::default()).await.unwrap();
    }
    assert_eq!(store.delete_tree("t").await.unwrap(), 4);
    assert_eq!(
        keys(&store.list("").await.unwrap()),
        vec!["t-x", "tt", "u/t"]
    );
    assert_eq!(
        store.delete_tree("t").await.unwrap(),
        0,
        "deleting a missing tree removes nothing"
    );
    store
        .put("t/again", b"v", PutOptions::default())
        .await
        .unwrap();
    assert!(
        store.exists("t/again").await.unwrap(),
        "a deleted tree can be written again"
    );
    assert_eq!(
        store.delete_tree("").await.unwrap(),
        4,
        "the empty prefix is the whole store"
    );
    assert!(store.list("").await.unwrap().is_empty());
    Outcome::Passed
}

/// Every key `delete_tree` removes is a Delete event for a tree watch; where
/// `Capabilities::atomic_delete_tree` is declared, a reader listing while it runs (another
/// handle, interleaved at every await) sees the whole tree or none of it.
pub async fn delete_tree_is_all_or_nothing_where_declared_atomic(ctx: Ctx) -> Outcome {
    const KEYS: usize = 40;
    let store = ctx.store();
    for i in 0..KEYS {
        let key = format!("atomic/{}/{i:02}", i % 4);
        store.put(&key, b"v", PutOptions::default()).await.unwrap();
    }
    let mut watch = store
        .watch_tree("atomic", WatchOptions::default())
        .await
        .unwrap();
    for _ in 0..KEYS {
        next_event(&mut watch, "initial state").await;
    }
    let reader = ctx.another().await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sizes = tokio::spawn({
        let done = done.clone();
        async move {
            let mut sizes = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                sizes.push(reader.list("atomic").await.unwrap().len());
            }
            sizes
        }
    });
    assert_eq!(store.delete_tree("atomic").await.unwrap(), KEYS as u64);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let sizes = sizes.await.unwrap();
    for _ in 0..KEYS {
        let event = next_event(&mut watch, "delete_tree's deletes").await;
        assert_eq!(event.kind, EventKind::Delete, "{event:?}");
    }
    if !ctx.caps().atomic_delete_tree {
        return Outcome::Gated("atomic_delete_tree");
    }
    assert!(
        sizes.iter().all(|n| *n == 0 || *n == KEYS),
        "a reader saw part of the tree while an atomic delete_tree ran: {sizes:?}"
    );
    Outcome::Passed
}

/// Where `Capabilities::snapshot_lists` is declared, a list is one point in time: while a
/// writer puts `snap/a` and then `snap/b` to the same round number, over and over, no list
/// (from another handle) shows `b` ahead of `a` — the later write without the earlier one.
pub async fn list_is_a_snapshot_where_declared(ctx: Ctx) -> Outcome {
    const ROUNDS: u64 = 100;
    let store = ctx.store();
    let reader = ctx.another().await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lists = tokio::spawn({
        let done = done.clone();
        async move {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let pairs = reader.list("snap").await.unwrap();
                let round = |key: &str| {
                    pairs
                        .iter()
                        .find(|p| p.key == key)
                        .and_then(|p| std::str::from_utf8(&p.value).ok()?.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                seen.push((round("snap/a"), round("snap/b")));
                tokio::task::yield_now().await;
            }
            seen
        }
    });
    for round in 1..=ROUNDS {
        for key in ["snap/a", "snap/b"] {
            let value = round.to_string();
            store
                .put(key, value.as_bytes(), PutOptions::default())
                .await
                .unwrap();
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = lists.await.unwrap();
    if !ctx.caps().snapshot_lists {
        return Outcome::Gated("snapshot_lists");
    }
    let torn: Vec<_> = seen.iter().filter(|(a, b)| b > a).collect();
    assert!(
        torn.is_empty(),
        "{} of {} lists showed snap/b's write without snap/a's before it, e.g. (a, b) = {:?}",
        torn.len(),
        seen.len(),
        torn.first()
    );
    Outcome::Passed
}
