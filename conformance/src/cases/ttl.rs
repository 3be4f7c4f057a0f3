//! Per-write TTLs.

use std::time::Duration;

use kv_core::{Error, Precondition, PutOptions, Store, TtlSupport, WatchOptions};

use crate::support::{PATIENCE, assert_delete, assert_put, next_event};
use crate::{Ctx, Outcome, assert_err};

/// The TTL cases use: a second, or the backend's minimum if that is longer.
pub(crate) fn test_ttl(support: &TtlSupport) -> Duration {
    support.min.max(Duration::from_secs(1))
}

/// Without TTL support, a TTL write must fail with `Unsupported("ttl")` and write nothing.
async fn ttl_is_unsupported(store: &dyn Store) -> Outcome {
    let opts = PutOptions::default().ttl(Duration::from_secs(60));
    assert_err!(
        store.put("ttl", b"v", opts.clone()).await,
        Error::Unsupported {
            capability: "ttl",
            ..
        },
        "put with a TTL"
    );
    assert_err!(
        store
            .atomic_put("ttl", b"v", Precondition::MustNotExist, opts)
            .await,
        Error::Unsupported {
            capability: "ttl",
            ..
        },
        "atomic_put with a TTL"
    );
    assert!(!store.exists("ttl").await.unwrap());
    Outcome::Gated("ttl")
}

/// A TTL key is readable at once, disappears after its TTL, and its expiry is a Delete event.
pub async fn ttl_keys_expire_with_a_delete_event(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let Some(support) = ctx.caps().ttl else {
        return ttl_is_unsupported(store.as_ref()).await;
    };
    let ttl = test_ttl(&support);
    let mut watch = store.watch_tree("", WatchOptions::default()).await.unwrap();
    store
        .put("stays", b"s", PutOptions::default())
        .await
        .unwrap();
    let written = std::time::Instant::now();
    store
        .put("brief", b"b", PutOptions::default().ttl(ttl))
        .await
        .unwrap();
    store
        .atomic_put(
            "brief-cas",
            b"c",
            Precondition::MustNotExist,
            PutOptions::default().ttl(ttl),
        )
        .await
        .unwrap();
    assert!(
        store.exists("brief").await.unwrap(),
        "a TTL key exists before its TTL"
    );
    assert_put(&next_event(&mut watch, "put stays").await, "stays", b"s");
    assert_put(&next_event(&mut watch, "put brief").await, "brief", b"b");
    assert_put(
        &next_event(&mut watch, "put brief-cas").await,
        "brief-cas",
        b"c",
    );
    let mut expired = [
        next_event(&mut watch, "expiry").await,
        next_event(&mut watch, "expiry").await,
    ];
    expired.sort_by(|a, b| a.key.cmp(&b.key));
    assert_delete(&expired[0], "brief");
    assert_delete(&expired[1], "brief-cas");
    assert!(
        written.elapsed() + Duration::from_millis(50) >= ttl,
        "expired after {:?}, before the TTL {ttl:?}",
        written.elapsed()
    );
    assert!(store.get("brief").await.unwrap().is_none());
    assert!(!store.exists("brief-cas").await.unwrap());
    let left: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.key.to_string())
        .collect();
    assert_eq!(left, vec!["stays"]);
    Outcome::Passed
}

/// Writing a TTL key again without a TTL makes it permanent.
pub async fn put_without_ttl_clears_the_expiry(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let Some(support) = ctx.caps().ttl else {
        return ttl_is_unsupported(store.as_ref()).await;
    };
    let ttl = test_ttl(&support);
    store
        .put("k", b"brief", PutOptions::default().ttl(ttl))
        .await
        .unwrap();
    store
        .put("k", b"forever", PutOptions::default())
        .await
        .unwrap();
    store
        .put("marker", b"m", PutOptions::default().ttl(ttl))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while store.exists("marker").await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "marker did not expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(support.granularity.max(Duration::from_millis(200))).await;
    let pair = store
        .get("k")
        .await
        .unwrap()
        .expect("k outlives its first TTL");
    assert_eq!(&pair.value[..], b"forever");
    Outcome::Passed
}

/// A zero TTL or one below the backend's minimum fails with `InvalidArgument`, writing nothing.
pub async fn bad_ttls_are_rejected(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let Some(support) = ctx.caps().ttl else {
        return ttl_is_unsupported(store.as_ref()).await;
    };
    let mut too_short = vec![Duration::ZERO];
    if support.min > Duration::from_millis(1) {
        too_short.push(support.min / 2);
    }
    for ttl in too_short {
        assert_err!(
            store.put("k", b"v", PutOptions::default().ttl(ttl)).await,
            Error::InvalidArgument { .. },
            "put with TTL {ttl:?} (minimum {:?})",
            support.min
        );
        assert!(
            !store.exists("k").await.unwrap(),
            "a rejected TTL put writes nothing"
        );
    }
    Outcome::Passed
}
