//! Leases shared by keys.

use std::sync::Arc;
use std::time::Duration;

use kv_core::{
    Election, Error, EventKind, Lease, Limiter, PutOptions, Registered, Registration, Store,
    StoreExt as _, WatchOptions,
};

use crate::support::{PATIENCE, assert_delete, next_event, next_event_within};
use crate::{Ctx, Outcome, assert_err};

/// `Some(outcome)` if the backend has no leases (after checking that it says so).
async fn gated(store: &Arc<dyn Store>) -> Option<Outcome> {
    if store.capabilities().leases {
        return None;
    }
    assert_err!(
        store.grant(Duration::from_secs(30)).await,
        Error::Unsupported {
            capability: "leases",
            ..
        },
        "grant without leases"
    );
    Some(Outcome::Gated("leases"))
}

/// A lease TTL every backend accepts that keeps the cases short: the backend's minimum TTL,
/// at least a second.
fn lease_ttl(store: &Arc<dyn Store>) -> Duration {
    let min = store.capabilities().ttl.map_or(Duration::ZERO, |t| t.min);
    min.max(Duration::from_secs(1))
}

/// Keys put with a lease live while it is renewed, well past its TTL; `revoke` deletes them
/// all at once (Delete events) and fires `lost`; a key rewritten without the lease leaves it.
/// A put with a revoked lease, or with a lease and a TTL, changes nothing.
pub async fn lease_keys_live_until_revoked(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    if let Some(outcome) = gated(store).await {
        return outcome;
    }
    let ttl = lease_ttl(store);
    let lease = store.grant(ttl).await.unwrap();
    let with = || PutOptions::default().lease(&lease);
    store.put("svc/a", b"1", with()).await.unwrap();
    store.put("svc/b", b"2", with()).await.unwrap();
    store.put("svc/c", b"3", with()).await.unwrap();
    store
        .put("svc/c", b"plain", PutOptions::default())
        .await
        .unwrap();
    assert_err!(
        store
            .put("svc/d", b"x", with().ttl(Duration::from_secs(60)))
            .await,
        Error::InvalidArgument { .. },
        "a lease and a TTL together"
    );
    tokio::time::sleep(ttl * 2 + ttl / 2).await;
    assert!(!lease.is_lost(), "a renewed lease is not lost");
    let keys = |pairs: Vec<kv_core::KvPair>| -> Vec<String> {
        pairs.iter().map(|p| p.key.to_string()).collect()
    };
    assert_eq!(
        keys(store.list("svc").await.unwrap()),
        ["svc/a", "svc/b", "svc/c"],
        "leased keys outlive the TTL while the lease is renewed"
    );
    let mut watch = store
        .watch_tree("svc", WatchOptions::default().synced())
        .await
        .unwrap();
    while next_event(&mut watch, "the initial state").await.kind != EventKind::Synced {}
    lease.revoke().await.unwrap();
    let first = next_event(&mut watch, "the revoke's first delete").await;
    let second = next_event(&mut watch, "the revoke's second delete").await;
    let mut deleted = [first, second];
    deleted.sort_by(|x, y| x.key.cmp(&y.key));
    assert_delete(&deleted[0], "svc/a");
    assert_delete(&deleted[1], "svc/b");
    assert_eq!(
        keys(store.list("svc").await.unwrap()),
        ["svc/c"],
        "revoke deleted the lease's keys, not the one rewritten without it"
    );
    tokio::time::timeout(PATIENCE, lease.lost().cancelled())
        .await
        .expect("lost() fires on revoke");
    assert_err!(
        store.put("svc/e", b"x", with()).await,
        Error::LeaseLost { .. },
        "a put with a revoked lease"
    );
    assert!(!store.exists("svc/e").await.unwrap());
    lease.revoke().await.expect("revoking twice is harmless");
    tokio::time::sleep(ttl * 2).await;
    assert!(
        store.exists("svc/c").await.unwrap(),
        "a key rewritten without the lease does not expire with it"
    );
    Outcome::Passed
}

/// When the holder stops renewing (every clone of the lease dropped), its keys go once the TTL
/// has run out, with Delete events seen by other handles; closing the granting handle revokes
/// its leases at once.
pub async fn lease_keys_go_when_the_holder_stops(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    if let Some(outcome) = gated(store).await {
        return outcome;
    }
    let ttl = lease_ttl(store);
    let holder = ctx.another().await;
    let mut watch = store
        .watch_tree("svc", WatchOptions::default())
        .await
        .unwrap();
    let lease: Lease = holder.grant(ttl).await.unwrap();
    holder
        .put("svc/dropped", b"x", PutOptions::default().lease(&lease))
        .await
        .unwrap();
    let put = next_event(&mut watch, "the leased put").await;
    assert_eq!(put.kind, EventKind::Put);
    drop(lease);
    let started = std::time::Instant::now();
    // Consul ends an unrenewed session up to twice its TTL late (docs/SEMANTICS.md).
    let within = ttl * 2 + PATIENCE;
    let gone = next_event_within(&mut watch, within, "the expiry of an abandoned lease").await;
    assert_delete(&gone, "svc/dropped");
    assert!(
        started.elapsed() >= ttl / 2,
        "the key went {:?} after the lease was dropped, before its TTL of {ttl:?}",
        started.elapsed()
    );
    assert!(!store.exists("svc/dropped").await.unwrap());

    let lease = holder.grant(ttl * 30).await.unwrap();
    holder
        .put("svc/closed", b"x", PutOptions::default().lease(&lease))
        .await
        .unwrap();
    next_event(&mut watch, "the second leased put").await;
    holder.close().await.unwrap();
    let gone = next_event(&mut watch, "the delete when the granting handle closes").await;
    assert_delete(&gone, "svc/closed");
    assert!(lease.is_lost(), "closing the handle ends its leases");
    Outcome::Passed
}

/// Another handle takes a lease up by its ID (`attach_lease`; `kvctl lease keepalive ID` does
/// it from another process): renewed there, it keeps the keys alive after the granter stopped
/// renewing, and it can put keys; closing that handle fires its `lost` but revokes nothing;
/// a revoke through any attached copy ends the lease for everyone. An ended lease's ID is
/// `LeaseLost` and never names a later lease; an ID that cannot be one is `InvalidArgument`
/// (or `LeaseLost`).
pub async fn a_lease_is_taken_up_by_id(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    if let Some(outcome) = gated(store).await {
        return outcome;
    }
    if !store.capabilities().attach_leases {
        assert_err!(
            store.attach_lease("1").await,
            Error::Unsupported {
                capability: "attach_leases",
                ..
            },
            "attach without attach_leases"
        );
        return Outcome::Gated("attach_leases");
    }
    let ttl = lease_ttl(store);
    let granter = ctx.another().await;
    let lease = granter.grant(ttl).await.unwrap();
    granter
        .put("svc/a", b"1", PutOptions::default().lease(&lease))
        .await
        .unwrap();
    let keeper = ctx.another().await;
    let kept = keeper.attach_lease(lease.id()).await.unwrap();
    assert_eq!(kept.id(), lease.id());
    assert!(
        kept.ttl() >= lease.ttl(),
        "the attached lease's TTL {:?} is the lease's {:?}",
        kept.ttl(),
        lease.ttl()
    );
    let id = lease.id().to_owned();
    drop(lease);
    // Past the point where the keys would go without renewal (Consul: up to twice late).
    tokio::time::sleep(ttl * 2 + ttl / 2).await;
    assert!(!kept.is_lost(), "the attached lease is renewed");
    assert!(
        store.exists("svc/a").await.unwrap(),
        "the attached lease keeps the keys alive after the granter stopped renewing"
    );
    keeper
        .put("svc/b", b"2", PutOptions::default().lease(&kept))
        .await
        .unwrap();
    keeper.close().await.unwrap();
    tokio::time::timeout(PATIENCE, kept.lost().cancelled())
        .await
        .expect("closing the attaching handle fires lost()");
    assert!(
        store.exists("svc/a").await.unwrap() && store.exists("svc/b").await.unwrap(),
        "closing the attaching handle revokes nothing"
    );

    let again = store.attach_lease(&id).await.unwrap();
    let mut watch = store
        .watch_tree("svc", WatchOptions::default().synced())
        .await
        .unwrap();
    while next_event(&mut watch, "the initial state").await.kind != EventKind::Synced {}
    again.revoke().await.unwrap();
    let mut deleted = [
        next_event(&mut watch, "the revoke's first delete").await,
        next_event(&mut watch, "the revoke's second delete").await,
    ];
    deleted.sort_by(|x, y| x.key.cmp(&y.key));
    assert_delete(&deleted[0], "svc/a");
    assert_delete(&deleted[1], "svc/b");
    assert_err!(
        store.attach_lease(&id).await,
        Error::LeaseLost { .. },
        "attaching a revoked lease"
    );
    let fresh = store.grant(ttl).await.unwrap();
    assert_ne!(
        fresh.id(),
        id,
        "a new lease reuses the ID of one that ended"
    );
    fresh.revoke().await.unwrap();
    assert_err!(
        store.attach_lease("no such lease/../x").await,
        Error::InvalidArgument { .. } | Error::LeaseLost { .. },
        "attaching what cannot be a lease ID"
    );
    Outcome::Passed
}

/// An election on any store with leases: one leader at a time; a second candidate waits and
/// is elected when the first resigns; observers see each leader; leaders' versions increase;
/// the resigned leader's `lost()` fires.
pub async fn election_has_one_leader_at_a_time(ctx: Ctx) -> Outcome {
    let store = ctx.store().clone();
    if let Some(outcome) = gated(&store).await {
        return outcome;
    }
    let ttl = lease_ttl(&store);
    let other = ctx.another().await;
    let first = Election::new(store.clone(), "elect/leader")
        .unwrap()
        .ttl(ttl);
    let second = Election::new(other.clone(), "elect/leader")
        .unwrap()
        .ttl(ttl);
    let mut observed = first.observe().await.unwrap();
    assert_eq!(next_leader(&mut observed).await, None, "no leader at first");
    let mut one = first.campaign("one").await.unwrap();
    assert_eq!(
        next_leader(&mut observed).await.as_deref(),
        Some(&b"one"[..])
    );
    let waiting = tokio::spawn(async move { second.campaign("two").await });
    tokio::time::sleep(ttl * 2).await;
    assert!(
        !waiting.is_finished(),
        "a second leader was elected while the first leads"
    );
    one.proclaim("one, again").await.unwrap();
    assert_eq!(
        next_leader(&mut observed).await.as_deref(),
        Some(&b"one, again"[..])
    );
    let lost = one.lost();
    let version = one.version();
    one.resign().await.unwrap();
    assert!(lost.is_cancelled(), "resigning ends the leadership");
    let two = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiting candidate is elected after the resignation")
        .unwrap()
        .unwrap();
    assert!(two.version() > version, "leader versions increase");
    let mut seen = next_leader(&mut observed).await;
    if seen.is_none() {
        seen = next_leader(&mut observed).await;
    }
    assert_eq!(
        seen.as_deref(),
        Some(&b"two"[..]),
        "observers see the new leader"
    );
    assert_eq!(first.leader().await.unwrap().as_deref(), Some(&b"two"[..]));
    two.resign().await.unwrap();
    Outcome::Passed
}

async fn next_leader(stream: &mut kv_core::LeaderStream) -> Option<bytes::Bytes> {
    use futures::StreamExt;
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(Ok(leader))) => leader,
        other => panic!("observing the election: {other:?}"),
    }
}

/// A leadership dropped without `resign()` resigns in the background, as a dropped lock
/// guard releases: a waiting candidate is elected at once, not after the lease's TTL.
pub async fn a_dropped_leadership_hands_over_at_once(ctx: Ctx) -> Outcome {
    let store = ctx.store().clone();
    if let Some(outcome) = gated(&store).await {
        return outcome;
    }
    let ttl = lease_ttl(&store).max(Duration::from_secs(10)) * 2;
    let other = ctx.another().await;
    let first = Election::new(store.clone(), "drop/leader")
        .unwrap()
        .ttl(ttl);
    let second = Election::new(other.clone(), "drop/leader")
        .unwrap()
        .ttl(ttl);
    let leading = first.campaign("one").await.unwrap();
    let waiting = tokio::spawn(async move { second.campaign("two").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a second leader while the first leads"
    );
    let dropped = std::time::Instant::now();
    drop(leading);
    let next = tokio::time::timeout(ttl / 2, waiting)
        .await
        .unwrap_or_else(|_| panic!("no handover within {:?} of the drop (TTL {ttl:?})", ttl / 2))
        .unwrap()
        .unwrap();
    let handover = dropped.elapsed();
    assert!(handover < ttl / 2, "handed over after {handover:?}");
    next.resign().await.unwrap();
    Outcome::Passed
}

/// [`gated`], and `Some(outcome)` too if leases cannot be taken up by ID here (the
/// self-healing cases end a recipe's lease from another handle that way).
async fn gated_by_id(store: &Arc<dyn Store>) -> Option<Outcome> {
    match gated(store).await {
        Some(outcome) => Some(outcome),
        None => (!store.capabilities().attach_leases).then_some(Outcome::Gated("attach_leases")),
    }
}

/// A `Registration` puts its key back after its lease is lost (revoked here from another
/// handle, as an outage past the TTL would end it), with a new lease, and reports each
/// state; `stop()` removes the key at once.
pub async fn a_registration_comes_back_after_its_lease_is_lost(ctx: Ctx) -> Outcome {
    let store = ctx.store().clone();
    if let Some(outcome) = gated_by_id(&store).await {
        return outcome;
    }
    let other = ctx.another().await;
    let registration = Registration::start(
        store.clone(),
        "reg/node-1",
        "10.0.0.7:80",
        lease_ttl(&store),
    )
    .unwrap();
    registration.live().await.unwrap();
    let Registered::Live { lease_id, .. } = registration.state() else {
        panic!("live, then {:?}", registration.state());
    };
    assert!(store.exists("reg/node-1").await.unwrap());
    other
        .attach_lease(&lease_id)
        .await
        .unwrap()
        .revoke()
        .await
        .unwrap();
    let mut states = registration.watch();
    let back = tokio::time::timeout(
        PATIENCE,
        states.wait_for(|s| matches!(s, Registered::Live { lease_id: id, .. } if *id != lease_id)),
    )
    .await;
    let back = back.is_ok_and(|seen| seen.is_ok());
    drop(states);
    assert!(
        back,
        "registered again within {PATIENCE:?} after its lease was revoked: {:?}",
        registration.state()
    );
    let pair = store
        .get("reg/node-1")
        .await
        .unwrap()
        .expect("the key is back");
    assert_eq!(&pair.value[..], b"10.0.0.7:80");
    registration.stop().await;
    assert!(
        !store.exists("reg/node-1").await.unwrap(),
        "stop() removes the key at once"
    );
    Outcome::Passed
}

/// `Election::run` leads, drops the leader's work when the leadership is lost (its lease
/// revoked here from another handle), campaigns again and leads in a new term with a higher
/// fencing token; cancelling `stop` resigns.
pub async fn an_election_run_leads_again_after_losing_its_leadership(ctx: Ctx) -> Outcome {
    let store = ctx.store().clone();
    if let Some(outcome) = gated_by_id(&store).await {
        return outcome;
    }
    let other = ctx.another().await;
    let election = Election::new(store.clone(), "run/leader")
        .unwrap()
        .ttl(lease_ttl(&store));
    let (terms, mut started) = tokio::sync::mpsc::unbounded_channel();
    let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = kv_core::CancellationToken::new();
    let running = {
        let (ended, stop) = (ended.clone(), stop.clone());
        tokio::spawn(async move {
            election
                .run("one", stop, move |term| {
                    let _ = terms.send(term);
                    // Counts the work dropped (cancelled) when its term ends.
                    struct Work(Arc<std::sync::atomic::AtomicUsize>);
                    impl Drop for Work {
                        fn drop(&mut self) {
                            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    let work = Work(ended.clone());
                    async move {
                        let _work = work;
                        std::future::pending::<()>().await
                    }
                })
                .await
        })
    };
    let first = tokio::time::timeout(PATIENCE, started.recv())
        .await
        .expect("elected")
        .unwrap();
    other
        .attach_lease(first.lease_id())
        .await
        .unwrap()
        .revoke()
        .await
        .unwrap();
    let second = tokio::time::timeout(PATIENCE, started.recv())
        .await
        .expect("elected again after losing the leadership")
        .unwrap();
    assert!(first.lost().is_cancelled(), "the first term ended");
    assert_eq!(
        ended.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the first term's work was dropped"
    );
    assert!(second.fencing_token() > first.fencing_token());
    stop.cancel();
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("run ends when stopped")
        .unwrap()
        .unwrap();
    assert!(second.lost().is_cancelled(), "stopping resigns");
    assert!(!store.exists("run/leader").await.unwrap());
    Outcome::Passed
}

/// A write fenced by a leadership (`Leadership::fence`, `StoreExt::update_fenced`) lands while
/// it leads — retried past other writers of the key — and never once it has ended, whether no
/// one or another candidate leads now: what a leader paused past its lease needs, since it
/// cannot see `lost()` fire while frozen.
pub async fn fenced_writes_land_only_while_leading(ctx: Ctx) -> Outcome {
    let store = ctx.store().clone();
    if let Some(outcome) = gated(&store).await {
        return outcome;
    }
    if let Some(outcome) = crate::cases::txn::gated(&store).await {
        return outcome;
    }
    let ttl = lease_ttl(&store);
    let other = ctx.another().await;
    let increment = |current: Option<&[u8]>| {
        let n: u64 = current
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        Ok((n + 1).to_string().into_bytes())
    };
    let count = |store: Arc<dyn Store>| async move {
        let pair = store.get("fence/count").await.unwrap();
        pair.map(|p| String::from_utf8_lossy(&p.value).into_owned())
    };
    let first = Election::new(store.clone(), "fence/leader")
        .unwrap()
        .ttl(ttl);
    let leading = first.campaign("one").await.unwrap();
    assert_eq!(leading.fencing_token(), leading.version());
    assert_eq!(leading.key(), "fence/leader");
    let fence = leading.fence();
    store
        .update_fenced("fence/count", std::slice::from_ref(&fence), increment)
        .await
        .unwrap();
    // Two writers of the key at once, both fenced: conflicts read again, no update is lost.
    let writers = [store.clone(), other.clone()].map(|writer| {
        let fence = fence.clone();
        async move {
            for _ in 0..10 {
                writer
                    .update_fenced("fence/count", std::slice::from_ref(&fence), increment)
                    .await
                    .unwrap();
            }
        }
    });
    let [a, b] = writers;
    tokio::join!(a, b);
    assert_eq!(count(store.clone()).await.as_deref(), Some("21"));
    // The leadership ends; a write fenced by it is refused, with no one leading and with a
    // new leader, and writes nothing.
    let token = leading.fencing_token();
    leading.resign().await.unwrap();
    let mut next = None;
    for round in ["no leader", "another leader"] {
        if round == "another leader" {
            let second = Election::new(other.clone(), "fence/leader")
                .unwrap()
                .ttl(ttl);
            let elected = second.campaign("two").await.unwrap();
            assert!(elected.fencing_token() > token, "fencing tokens increase");
            next = Some(elected);
        }
        let refused = store
            .update_fenced("fence/count", std::slice::from_ref(&fence), increment)
            .await;
        assert!(
            matches!(&refused, Err(Error::Conflict { key, .. }) if key.trim_start_matches('/') == "fence/leader"),
            "a write fenced by an ended leadership ({round}): {refused:?}"
        );
        assert_eq!(count(store.clone()).await.as_deref(), Some("21"), "{round}");
    }
    if let Some(next) = next {
        next.resign().await.unwrap();
    }
    Outcome::Passed
}

/// A limiter admits at most N holders; a waiter gets a slot when a holder releases it.
pub async fn limiter_admits_at_most_n(ctx: Ctx) -> Outcome {
    let store = ctx.store().clone();
    if let Some(outcome) = gated(&store).await {
        return outcome;
    }
    let ttl = lease_ttl(&store);
    let other = ctx.another().await;
    let limiter = Limiter::new(store.clone(), "limits/jobs", 2)
        .unwrap()
        .ttl(ttl);
    let a = limiter.acquire("a").await.unwrap();
    let b = Limiter::new(other.clone(), "limits/jobs", 2)
        .unwrap()
        .ttl(ttl)
        .acquire("b")
        .await
        .unwrap();
    assert_ne!(a.slot(), b.slot());
    assert!(
        limiter.try_acquire("c").await.unwrap().is_none(),
        "a third holder while two hold the limit"
    );
    let waiter = limiter.clone();
    let waiting = tokio::spawn(async move { waiter.acquire("c").await });
    tokio::time::sleep(ttl * 2).await;
    assert!(!waiting.is_finished(), "a third holder got in");
    let freed = a.slot();
    a.release().await.unwrap();
    let c = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiter gets the freed slot")
        .unwrap()
        .unwrap();
    assert_eq!(c.slot(), freed);
    let mut holders = limiter.holders().await.unwrap();
    holders.sort();
    assert_eq!(holders, [&b"b"[..], &b"c"[..]]);
    b.release().await.unwrap();
    c.release().await.unwrap();
    assert!(limiter.holders().await.unwrap().is_empty());
    Outcome::Passed
}
