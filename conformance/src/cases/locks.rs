//! Locks: exclusion, fencing, leases, release, subtree scope.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use kv_core::{Error, LockOptions, LockScope, Store};

use crate::support::PATIENCE;
use crate::{Ctx, Outcome, assert_err};

/// Without lock support, `new_lock` must fail with `Unsupported("locks")`.
async fn locks_unsupported(store: &dyn Store) -> Outcome {
    assert_err!(
        store.new_lock("l", LockOptions::default()).await,
        Error::Unsupported {
            capability: "locks",
            ..
        },
        "new_lock"
    );
    Outcome::Gated("locks")
}

/// A lock TTL short enough for lease tests: a second, or the backend's minimum.
fn short_ttl(ctx: &Ctx) -> Duration {
    ctx.caps()
        .ttl
        .map_or(Duration::from_secs(1), |t| t.min)
        .max(Duration::from_secs(1))
}

macro_rules! require_locks {
    ($ctx:expr) => {
        if !$ctx.caps().locks {
            return locks_unsupported($ctx.store().as_ref()).await;
        }
    };
}

/// A lock TTL of zero, or below the backend's TTL minimum, is `InvalidArgument` (from
/// `new_lock`, or at the latest from `try_acquire`) and takes nothing.
pub async fn lock_ttls_below_the_minimum_are_refused(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    let store = ctx.store();
    let mut too_short = vec![Duration::ZERO];
    if let Some(support) = ctx.caps().ttl
        && support.min > Duration::from_millis(1)
    {
        too_short.push(support.min / 2);
    }
    for ttl in too_short {
        let refused = match store
            .new_lock("short", LockOptions::default().ttl(ttl))
            .await
        {
            Err(error) => error,
            Ok(lock) => match lock.try_acquire().await {
                Err(error) => error,
                Ok(guard) => panic!("a lock with TTL {ttl:?} was taken: {guard:?}"),
            },
        };
        assert!(
            matches!(refused, Error::InvalidArgument { .. }),
            "lock TTL {ttl:?}: expected InvalidArgument, got {refused:?}"
        );
    }
    let lock = store
        .new_lock("short", LockOptions::default())
        .await
        .unwrap();
    assert!(
        lock.try_acquire().await.unwrap().is_some(),
        "a refused lock took nothing"
    );
    Outcome::Passed
}

/// Holders from two handles never overlap.
pub async fn lock_excludes_under_contention(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    let stores = [ctx.store().clone(), ctx.another().await];
    let inside = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = stores[i % 2].clone();
        let (inside, entered) = (inside.clone(), entered.clone());
        tasks.push(tokio::spawn(async move {
            let lock = store
                .new_lock("mutex", LockOptions::default())
                .await
                .unwrap();
            for _ in 0..5 {
                let guard = lock.acquire().await.unwrap();
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                entered.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.store(false, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("contended acquires must all succeed eventually")
            .unwrap();
    }
    assert_eq!(entered.load(Ordering::SeqCst), 20);
    Outcome::Passed
}

/// `try_acquire` does not wait; `holder` shows who holds the lock.
pub async fn try_acquire_and_holder(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    let other = ctx.another().await;
    let mine = ctx
        .store()
        .new_lock("leader", LockOptions::default().value(&b"node-1"[..]))
        .await
        .unwrap();
    let theirs = other
        .new_lock("/leader/", LockOptions::default().value(&b"node-2"[..]))
        .await
        .unwrap();
    assert_eq!(theirs.key().as_str(), "leader");
    assert!(theirs.holder().await.unwrap().is_none());
    let guard = mine.try_acquire().await.unwrap().expect("a free lock");
    assert!(theirs.try_acquire().await.unwrap().is_none(), "a held lock");
    let holder = theirs.holder().await.unwrap().expect("a holder");
    assert_eq!(
        (&holder.value[..], holder.fencing_token),
        (&b"node-1"[..], guard.fencing_token())
    );
    assert!(
        !ctx.store().exists("leader").await.unwrap(),
        "locks are not keys"
    );
    guard.release().await.unwrap();
    assert!(theirs.holder().await.unwrap().is_none());
    let guard = theirs.try_acquire().await.unwrap().expect("released");
    assert_eq!(
        &mine.holder().await.unwrap().expect("holder").value[..],
        b"node-2"
    );
    drop(guard);
    Outcome::Passed
}

/// Fencing tokens strictly increase across successive holders.
pub async fn fencing_tokens_increase(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    let stores = [ctx.store().clone(), ctx.another().await];
    let mut last = 0;
    for i in 0..6 {
        let lock = stores[i % 2]
            .new_lock("fenced", LockOptions::default())
            .await
            .unwrap();
        let guard = lock.acquire().await.unwrap();
        assert!(
            guard.fencing_token() > last,
            "token {} after {last}",
            guard.fencing_token()
        );
        last = guard.fencing_token();
        if i % 2 == 0 {
            guard.release().await.unwrap();
        } else {
            drop(guard);
        }
    }
    Outcome::Passed
}

/// A lock holder's writes fenced by `StoreExt::claim_fence`: once the next holder (a greater
/// fencing token) has claimed the fence key, a write fenced by the earlier claim is a
/// `Conflict` naming the fence key and writes nothing, as is a claim with the earlier token;
/// the same token claims again idempotently; a fence key that holds no token is refused.
pub async fn a_claimed_fence_refuses_an_earlier_holders_writes(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    if let Some(outcome) = crate::cases::txn::gated(ctx.store()).await {
        return outcome;
    }
    use kv_core::StoreExt;
    let stores = [ctx.store().clone(), ctx.another().await];
    let write = |store: Arc<dyn Store>,
                 fence: (String, kv_core::Condition),
                 value: &'static str| async move {
        store
            .update_fenced("claimed/state", &[fence], |_| Ok(value.as_bytes().to_vec()))
            .await
    };
    let first = stores[0]
        .new_lock("claimed", LockOptions::default())
        .await
        .unwrap();
    let held = first.acquire().await.unwrap();
    let early = held.fencing_token();
    let fence = stores[0].claim_fence("claimed/fence", early).await.unwrap();
    write(stores[0].clone(), fence.clone(), "first")
        .await
        .unwrap();
    // The lock passes on (as it would after the first holder's lease ran out while it was
    // paused); the next holder claims the fence.
    held.release().await.unwrap();
    let second = stores[1]
        .new_lock("claimed", LockOptions::default())
        .await
        .unwrap();
    let next = second.acquire().await.unwrap();
    assert!(next.fencing_token() > early);
    let claimed = stores[1]
        .claim_fence("claimed/fence", next.fencing_token())
        .await
        .unwrap();
    assert_eq!(
        stores[1]
            .claim_fence("claimed/fence", next.fencing_token())
            .await
            .unwrap(),
        claimed,
        "the same token claims again: the same fence"
    );
    let late = write(stores[0].clone(), fence, "late").await;
    assert!(
        matches!(&late, Err(Error::Conflict { key, .. }) if key == "claimed/fence"),
        "a write fenced by the earlier holder's claim: {late:?}"
    );
    let again = stores[0].claim_fence("claimed/fence", early).await;
    assert!(
        matches!(&again, Err(Error::Conflict { key, .. }) if key == "claimed/fence"),
        "a claim with the earlier token: {again:?}"
    );
    let state = stores[0].get("claimed/state").await.unwrap().unwrap();
    assert_eq!(state.value, "first", "the refused write wrote nothing");
    write(stores[1].clone(), claimed, "second").await.unwrap();
    next.release().await.unwrap();
    stores[0]
        .put("claimed/other", b"not a token", Default::default())
        .await
        .unwrap();
    assert_err!(
        stores[0].claim_fence("claimed/other", 1).await,
        Error::InvalidArgument { .. },
        "a fence key that holds no token"
    );
    Outcome::Passed
}

/// A holder that stalls past its lease loses the lock: `lost()` fires, another client takes
/// it with a greater token, and the stale holder's release fails with `LockLost` without
/// freeing the new holder's lock.
pub async fn lock_is_lost_when_the_lease_is_not_renewed(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    let ttl = short_ttl(&ctx);
    let stalled = ctx
        .store()
        .new_lock("lease", LockOptions::default().ttl(ttl))
        .await
        .unwrap();
    let guard = stalled.acquire().await.unwrap();
    let lost = guard.lost();
    assert!(!guard.is_lost());
    // Block this (single-threaded) runtime: the renewal task cannot run, like a process in a
    // long pause.
    std::thread::sleep(ttl * 2 + Duration::from_millis(500));
    tokio::time::timeout(PATIENCE, lost.cancelled())
        .await
        .expect("lost() must fire once the lease has expired");
    let other = ctx.another().await;
    let next = other
        .new_lock("lease", LockOptions::default())
        .await
        .unwrap();
    let new_guard = tokio::time::timeout(PATIENCE, next.acquire())
        .await
        .expect("the expired lease frees the lock")
        .unwrap();
    assert!(new_guard.fencing_token() > guard.fencing_token());
    assert_err!(
        guard.release().await,
        Error::LockLost { .. },
        "releasing a lost lock"
    );
    assert!(
        next.try_acquire().await.unwrap().is_none(),
        "the stale release must not free the new holder's lock"
    );
    new_guard.release().await.unwrap();
    Outcome::Passed
}

/// Closing a handle releases its locks and fires their `lost()`, and nothing renews them any
/// more (a guard kept after the close keeps no session alive); dropping a guard releases it.
pub async fn locks_are_released_on_close_and_drop(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    let ttl = short_ttl(&ctx);
    let lock = ctx
        .store()
        .new_lock("owned", LockOptions::default())
        .await
        .unwrap();
    let guard = lock.acquire().await.unwrap();
    drop(guard);
    let other = ctx.another().await;
    let theirs = other
        .new_lock("owned", LockOptions::default().ttl(ttl))
        .await
        .unwrap();
    let guard = tokio::time::timeout(PATIENCE, theirs.acquire())
        .await
        .expect("a dropped guard releases")
        .unwrap();
    let lost = guard.lost();
    other.close().await.unwrap();
    tokio::time::timeout(PATIENCE, lost.cancelled())
        .await
        .expect("close fires lost()");
    let until = guard.validity().until();
    // Renewals come every third of the TTL: two would have come by now.
    tokio::time::sleep(ttl).await;
    assert_eq!(
        guard.validity().until(),
        until,
        "a lock of a closed handle was still renewed"
    );
    tokio::time::timeout(PATIENCE, lock.acquire())
        .await
        .expect("close releases the handle's locks")
        .unwrap();
    assert_err!(
        theirs.try_acquire().await,
        Error::Closed,
        "a lock of a closed handle"
    );
    Outcome::Passed
}

/// Abandoning a waiting `acquire` (dropping its future) leaves no trace.
pub async fn abandoned_acquire_leaves_nothing_behind(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    let holder = ctx
        .store()
        .new_lock("busy", LockOptions::default())
        .await
        .unwrap();
    let guard = holder.acquire().await.unwrap();
    let other = ctx.another().await;
    let waiter = other
        .new_lock("busy", LockOptions::default())
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), waiter.acquire())
            .await
            .is_err(),
        "acquire waits while the lock is held"
    );
    guard.release().await.unwrap();
    let third = ctx
        .another()
        .await
        .new_lock("busy", LockOptions::default())
        .await
        .unwrap();
    let taken = third.try_acquire().await.unwrap();
    assert!(
        taken.is_some(),
        "the abandoned waiter must not hold or block the lock"
    );
    Outcome::Passed
}

/// Without subtree support, a subtree lock must fail with `Unsupported("subtree_locks")`.
async fn subtree_unsupported(store: &dyn Store) -> Outcome {
    assert_err!(
        store
            .new_lock("s", LockOptions::default().scope(LockScope::Subtree))
            .await,
        Error::Unsupported {
            capability: "subtree_locks",
            ..
        },
        "a subtree lock"
    );
    Outcome::Gated("subtree_locks")
}

async fn try_lock(store: &dyn Store, key: &str, scope: LockScope) -> Option<kv_core::LockGuard> {
    let lock = store
        .new_lock(key, LockOptions::default().scope(scope))
        .await
        .unwrap();
    lock.try_acquire().await.unwrap()
}

/// A subtree lock on `a` excludes every lock on `a` or below it, but not siblings or parents.
pub async fn subtree_lock_excludes_the_subtree(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    if !ctx.caps().subtree_locks {
        return subtree_unsupported(ctx.store().as_ref()).await;
    }
    let other = ctx.another().await;
    let other = other.as_ref();
    let tree = try_lock(ctx.store().as_ref(), "a/b", LockScope::Subtree)
        .await
        .expect("free subtree");
    for (key, scope) in [
        ("a/b", LockScope::Key),
        ("a/b", LockScope::Subtree),
        ("a/b/c", LockScope::Key),
        ("a/b/c/d", LockScope::Subtree),
    ] {
        assert!(
            try_lock(other, key, scope).await.is_none(),
            "{key} ({scope:?}) is inside the locked subtree"
        );
    }
    for (key, scope) in [
        ("a", LockScope::Key),
        ("a/bc", LockScope::Key),
        ("a/c", LockScope::Subtree),
        ("b", LockScope::Subtree),
    ] {
        assert!(
            try_lock(other, key, scope).await.is_some(),
            "{key} ({scope:?}) is outside the locked subtree"
        );
    }
    tree.release().await.unwrap();
    assert!(
        try_lock(other, "a/b/c", LockScope::Key).await.is_some(),
        "released"
    );
    Outcome::Passed
}

/// A subtree lock waits for locks held inside it and for subtree locks on its ancestors.
pub async fn subtree_lock_is_excluded_by_locks_inside_and_above(ctx: Ctx) -> Outcome {
    require_locks!(ctx);
    if !ctx.caps().subtree_locks {
        return subtree_unsupported(ctx.store().as_ref()).await;
    }
    let other = ctx.another().await;
    let other = other.as_ref();
    let store = ctx.store().as_ref();

    let inner = try_lock(store, "x/y/z", LockScope::Key)
        .await
        .expect("free key");
    assert!(
        try_lock(other, "x", LockScope::Subtree).await.is_none(),
        "a key lock below blocks a subtree lock"
    );
    assert!(try_lock(other, "x/y", LockScope::Subtree).await.is_none());
    assert!(try_lock(other, "x/y/z", LockScope::Subtree).await.is_none());
    assert!(
        try_lock(other, "x/w", LockScope::Subtree).await.is_some(),
        "a sibling subtree is free"
    );
    let waiting = tokio::spawn({
        let lock = other
            .new_lock("x", LockOptions::default().scope(LockScope::Subtree))
            .await
            .unwrap();
        async move { lock.acquire().await.map(|g| g.fencing_token()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "acquire waits for the lock below");
    let inner_token = inner.fencing_token();
    inner.release().await.unwrap();
    let token = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("released below")
        .unwrap()
        .unwrap();
    assert!(token > inner_token);

    let outer = try_lock(store, "p", LockScope::Subtree)
        .await
        .expect("free subtree");
    assert!(
        try_lock(other, "p/q", LockScope::Subtree).await.is_none(),
        "an ancestor's subtree lock blocks"
    );
    drop(outer); // released in the background: wait for it
    let inner_lock = other
        .new_lock("p/q", LockOptions::default().scope(LockScope::Subtree))
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, inner_lock.acquire())
        .await
        .expect("dropping the ancestor's guard releases it")
        .unwrap();
    Outcome::Passed
}
