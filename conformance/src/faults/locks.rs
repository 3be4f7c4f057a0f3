//! Locks under faults: a partitioned holder is told first, a waiter outlasting its TTL gets
//! the lock, a revoke cut off says so.

use super::*;

/// Runs the lock fault cases against a server at `server_url`: opens a store directly and one
/// through a [`FaultProxy`] with `open(url)` (URL = server URL + `suffix`), then
/// [`a_partitioned_lock_holder_is_told_first`] and [`a_waiter_outlasting_its_ttl_gets_the_lock`]
/// with `ttl`. Prints the measured times. One call per backend's test.
pub async fn lock_faults<S, F, Fut>(
    kind: &str,
    server_url: &str,
    suffix: &str,
    ttl: Duration,
    open: F,
) where
    S: Store,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let (proxy, direct, proxied) = proxied_stores(server_url, suffix, &open).await;
    let (told, taken) =
        a_partitioned_lock_holder_is_told_first(&proxied, &direct, &proxy, ttl).await;
    eprintln!(
        "{kind}: lock TTL {ttl:?}, holder partitioned: lost() after {told:?}, another client \
         took the lock after {taken:?}"
    );
    let waited = Instant::now();
    a_waiter_outlasting_its_ttl_gets_the_lock(&direct, &proxied, ttl).await;
    eprintln!(
        "{kind}: a waiter that waited 2 x TTL got and kept the lock ({:?} in all)",
        waited.elapsed()
    );
    let (failed, error, recovered) = a_write_during_a_partition(&proxied, &proxy).await;
    eprintln!(
        "{kind}: a put during a partition failed after {failed:?} ({error}); after the heal the \
         same handle worked again in {recovered:?}"
    );
}

/// A lock holder cut off by a partition is told (`lost()`) before anyone else can take the
/// lock (libkv#31, swarm#2654). `proxied` reaches the server through `proxy`, `direct` does not.
/// Returns the times from the partition to `lost()` and to the other client's acquire. Panics
/// with the broken rule.
pub async fn a_partitioned_lock_holder_is_told_first(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    ttl: Duration,
) -> (Duration, Duration) {
    let holder = take_free_lock(proxied, "faults/leader", ttl).await;
    let contender = direct
        .new_lock("faults/leader", LockOptions::default().ttl(ttl))
        .await
        .expect("lock handle");
    proxy.hold();
    let partitioned = Instant::now();
    let lost = holder.lost();
    let told = async {
        lost.cancelled().await;
        partitioned.elapsed()
    };
    let taken = async {
        let guard = contender
            .acquire()
            .await
            .expect("the other client takes the lock once the holder's lease ends");
        (partitioned.elapsed(), guard)
    };
    let bound = ttl * 4 + Duration::from_secs(30);
    let (told, (taken, guard)) = tokio::time::timeout(bound, futures::future::join(told, taken))
        .await
        .unwrap_or_else(|_| panic!("neither lost() nor the other acquire within {bound:?}"));
    proxy.heal();
    assert!(
        told < taken,
        "two holders: the partitioned holder was told at {told:?}, after the other client took the lock at {taken:?}"
    );
    assert!(
        told <= ttl,
        "lost() fired {told:?} after the partition, later than the TTL {ttl:?}"
    );
    let released = tokio::time::timeout(Duration::from_secs(30), holder.release())
        .await
        .expect("release after heal answers");
    assert!(
        matches!(released, Err(Error::LockLost { .. })),
        "releasing a lost lock says so: {released:?}"
    );
    guard.release().await.expect("the new holder releases");
    (told, taken)
}

/// Takes a lock that nobody holds.
async fn take_free_lock(store: &dyn Store, key: &str, ttl: Duration) -> kv_core::LockGuard {
    store
        .new_lock(key, LockOptions::default().ttl(ttl))
        .await
        .expect("lock handle")
        .acquire()
        .await
        .expect("the free lock")
}

/// A waiter that waits longer than its own TTL still gets the lock when it is freed, and then
/// holds it (no lease taken before it was needed, or one kept alive while waiting).
pub async fn a_waiter_outlasting_its_ttl_gets_the_lock(
    first: &dyn Store,
    second: &dyn Store,
    ttl: Duration,
) {
    let held = take_free_lock(first, "faults/waited", ttl).await;
    let waiter = second
        .new_lock("faults/waited", LockOptions::default().ttl(ttl))
        .await
        .expect("lock handle");
    let waiting = tokio::spawn(async move {
        let guard = waiter.acquire().await;
        (guard, waiter)
    });
    tokio::time::sleep(ttl * 2).await;
    assert!(!waiting.is_finished(), "the lock is still held");
    held.release().await.expect("release");
    let (guard, waiter) = tokio::time::timeout(ttl * 2 + Duration::from_secs(10), waiting)
        .await
        .expect("the waiter gets the freed lock")
        .expect("task");
    let guard = guard.expect("a wait longer than the TTL still ends with the lock");
    tokio::time::sleep(ttl).await;
    assert!(!guard.is_lost(), "the new holder keeps the lock");
    let holder = waiter.holder().await.expect("holder");
    assert_eq!(
        holder.map(|h| h.fencing_token),
        Some(guard.fencing_token()),
        "the server shows the waiter as the holder"
    );
    guard.release().await.expect("release");
}

/// A revoke cut off from the server by a partition says `Ok` only if the lease's key is gone
/// (read directly at once); otherwise its error says the outcome is unknown, and the key goes
/// anyway within twice the TTL (plus 2 s) after the heal: the lease is no longer renewed.
/// Returns what the revoke said and when the key was gone, from the revoke's return.
pub async fn a_revoke_cut_off(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    ttl: Duration,
) -> (String, Duration) {
    let key = "faults/revoked";
    let lease = proxied
        .grant(ttl)
        .await
        .expect("grant before the partition");
    proxied
        .put(key, b"leased", PutOptions::default().lease(&lease))
        .await
        .expect("put with the lease before the partition");
    proxy.hold();
    let revoked = tokio::time::timeout(Duration::from_secs(10), lease.revoke())
        .await
        .expect("a revoke during a partition must give up on its own");
    let returned = Instant::now();
    let left = direct.get(key).await.expect("read directly");
    proxy.heal();
    match &revoked {
        Ok(()) => assert!(
            left.is_none(),
            "revoke said Ok while the lease's key was still there: {left:?}"
        ),
        Err(e) => assert!(
            e.is_outcome_unknown(),
            "a revoke sent into a partition may have been applied: its error must say the \
             outcome is unknown: {e:?}"
        ),
    }
    let until = returned + ttl * 2 + Duration::from_secs(2);
    while direct.get(key).await.ok().flatten().is_some() {
        assert!(
            Instant::now() < until,
            "the key outlived its lease by twice the TTL after a revoke that said {revoked:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = match &revoked {
        Ok(()) => "Ok".to_owned(),
        Err(e) => format!("{e}"),
    };
    (said, returned.elapsed())
}
