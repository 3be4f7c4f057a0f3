//! Handle lifecycle and declared capabilities.

use kv_core::{Error, LockOptions, MAX_KEY_BYTES, Precondition, PutOptions, Txn, WatchOptions};

use crate::{Ctx, Outcome, assert_err};

/// After `close`, every call on that handle fails with `Closed`; other handles carry on.
pub async fn closed_handle_rejects_every_call(ctx: Ctx) -> Outcome {
    let other = ctx.another().await;
    other.put("k", b"v", PutOptions::default()).await.unwrap();
    other.close().await.unwrap();
    let none = PutOptions::default;
    assert_err!(other.put("k", b"v", none()).await, Error::Closed, "put");
    assert_err!(other.get("k").await, Error::Closed, "get");
    assert_err!(other.exists("k").await, Error::Closed, "exists");
    assert_err!(other.delete("k").await, Error::Closed, "delete");
    assert_err!(other.list("").await, Error::Closed, "list");
    assert_err!(
        other.list_children("").await,
        Error::Closed,
        "list_children"
    );
    assert_err!(other.delete_tree("").await, Error::Closed, "delete_tree");
    assert_err!(
        other
            .atomic_put("k", b"v", Precondition::MustNotExist, none())
            .await,
        Error::Closed,
        "atomic_put"
    );
    assert_err!(
        other.atomic_delete("k", 1).await,
        Error::Closed,
        "atomic_delete"
    );
    assert_err!(
        other.txn(Txn::new().put("k", "v")).await,
        Error::Closed,
        "txn"
    );
    assert_err!(
        other.watch("k", WatchOptions::default()).await,
        Error::Closed,
        "watch"
    );
    assert_err!(
        other.watch_tree("", WatchOptions::default()).await,
        Error::Closed,
        "watch_tree"
    );
    assert_err!(
        other.new_lock("k", LockOptions::default()).await,
        Error::Closed,
        "new_lock"
    );
    other.close().await.expect("closing twice is fine");
    let pair = ctx
        .store()
        .get("k")
        .await
        .unwrap()
        .expect("the data outlives the closed handle");
    assert_eq!(&pair.value[..], b"v");
    Outcome::Passed
}

/// The declared limits are coherent with the contract.
pub async fn capabilities_are_coherent(ctx: Ctx) -> Outcome {
    let caps = ctx.caps();
    assert!(!caps.backend.is_empty());
    assert!(
        caps.max_key_bytes > 0 && caps.max_key_bytes <= MAX_KEY_BYTES,
        "max_key_bytes {}",
        caps.max_key_bytes
    );
    assert!(
        caps.max_value_bytes >= 1024,
        "max_value_bytes {} is uselessly small",
        caps.max_value_bytes
    );
    if let Some(ttl) = caps.ttl {
        assert!(!ttl.granularity.is_zero(), "a TTL granularity of zero");
        assert!(!ttl.min.is_zero(), "a minimum TTL of zero");
    }
    if caps.subtree_locks {
        assert!(caps.locks, "subtree locks without locks");
    }
    assert_eq!(
        ctx.another().await.capabilities(),
        caps,
        "every handle declares the same capabilities"
    );
    Outcome::Passed
}
