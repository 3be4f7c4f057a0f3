//! Multi-key transactions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kv_core::{
    Condition, Error, EventKind, KvPair, PutOptions, Store, Txn, TxnOpResult, WatchOptions,
};

use crate::support::{expect_quiet, next_event};
use crate::{Ctx, Outcome, assert_err};

/// `Some(outcome)` if the backend has no transactions (after checking that `txn` says so).
pub(crate) async fn gated(store: &Arc<dyn Store>) -> Option<Outcome> {
    if store.capabilities().max_txn_ops > 0 {
        return None;
    }
    assert_err!(
        store.txn(Txn::new().put("k", "v")).await,
        Error::Unsupported {
            capability: "transactions",
            ..
        },
        "txn without max_txn_ops"
    );
    assert!(!store.exists("k").await.unwrap(), "a refused txn wrote");
    Some(Outcome::Gated("transactions"))
}

/// Everything under the case's namespace, as (key, value, version).
async fn snapshot(store: &Arc<dyn Store>) -> Vec<KvPair> {
    store.list("").await.unwrap()
}

/// Every kind of condition, holding and failing: a failed one names its key and changes
/// nothing; when all hold, every put and delete is applied, with versions above all earlier
/// ones, and deleting a missing key is a no-op (version 0).
pub async fn txn_applies_all_or_nothing(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    if let Some(outcome) = gated(store).await {
        return outcome;
    }
    let none = PutOptions::default;
    let va = store.put("a", b"1", none()).await.unwrap();
    let vb = store.put("b", b"2", none()).await.unwrap();
    let before = snapshot(store).await;
    let failing = [
        ("a", Condition::Missing, "Missing on an existing key"),
        ("c", Condition::Exists, "Exists on a missing key"),
        ("a", Condition::Version(va + 1000), "a wrong version"),
        ("c", Condition::Version(va), "Version on a missing key"),
        ("b", Condition::Value("3".into()), "a wrong value"),
        ("c", Condition::Value("".into()), "Value on a missing key"),
    ];
    for (key, condition, what) in failing {
        let txn = Txn::new()
            .when("a", Condition::Version(va))
            .when(key, condition)
            .put("a", "10")
            .put("c", "30")
            .delete("b");
        match store.txn(txn).await {
            Err(Error::Conflict { key: named, .. }) => {
                assert_eq!(
                    named, key,
                    "{what}: the conflict names the failed condition's key"
                )
            }
            other => panic!("{what}: expected a Conflict, got {other:?}"),
        }
        assert_eq!(
            snapshot(store).await,
            before,
            "{what}: a failed txn changed nothing"
        );
    }
    let txn = Txn::new()
        .when("a", Condition::Version(va))
        .when("/b/", Condition::Value("2".into()))
        .when("b", Condition::Exists)
        .when("c", Condition::Missing)
        .put("a", "10")
        .put("c/d", "")
        .delete("b")
        .delete("never");
    let results = store.txn(txn).await.expect("a txn whose conditions hold");
    let versions: Vec<u64> = results.iter().filter_map(TxnOpResult::version).collect();
    assert_eq!(
        results[2..],
        [
            TxnOpResult::Delete { existed: true },
            TxnOpResult::Delete { existed: false }
        ],
        "a delete says whether the key existed; deleting a missing key is a no-op"
    );
    assert!(
        versions.len() == 2 && versions.iter().all(|v| *v > vb),
        "the puts' versions are above every earlier one: {results:?}"
    );
    let after = snapshot(store).await;
    let got: Vec<(&str, &[u8], u64)> = after
        .iter()
        .map(|p| (p.key.as_str(), &p.value[..], p.version))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", &b"10"[..], versions[0]),
            ("c/d", &b""[..], versions[1])
        ],
        "the txn's puts and deletes were all applied"
    );
    let checks = Txn::new()
        .when("a", Condition::Value("10".into()))
        .when("b", Condition::Missing);
    assert_eq!(
        store.txn(checks).await.unwrap(),
        Vec::new(),
        "a txn of conditions only"
    );
    assert_eq!(store.txn(Txn::new()).await.unwrap(), Vec::new());
    assert_eq!(
        snapshot(store).await,
        after,
        "conditions alone change nothing"
    );
    let ttl = store.capabilities().ttl.map(|t| t.min);
    if let Some(min) = ttl.filter(|min| *min <= Duration::from_secs(2)) {
        store
            .put("short", b"x", PutOptions::default().ttl(min))
            .await
            .unwrap();
        tokio::time::sleep(min + Duration::from_millis(1500)).await;
        let txn = Txn::new()
            .when("short", Condition::Missing)
            .put("short", "y");
        store.txn(txn).await.expect("an expired key is missing");
        assert_eq!(store.get("short").await.unwrap().unwrap().value, "y");
    }
    Outcome::Passed
}

/// Invalid keys, a key written twice, an oversize value and too many operations are refused
/// before anything is sent: nothing changes.
pub async fn txn_is_checked_before_anything_is_sent(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    if let Some(outcome) = gated(store).await {
        return outcome;
    }
    let caps = store.capabilities().clone();
    store.put("a", b"1", PutOptions::default()).await.unwrap();
    let before = snapshot(store).await;
    assert_err!(
        store.txn(Txn::new().put("b", "1").put("a//x", "2")).await,
        Error::InvalidKey { .. },
        "an invalid key"
    );
    assert_err!(
        store
            .txn(Txn::new().when("", Condition::Missing).put("b", "1"))
            .await,
        Error::InvalidKey { .. },
        "an empty key in a condition"
    );
    assert_err!(
        store.txn(Txn::new().put("b", "1").delete("/b")).await,
        Error::InvalidArgument { .. },
        "a key written twice"
    );
    let big = vec![0u8; caps.max_value_bytes + 1];
    assert_err!(
        store.txn(Txn::new().put("b", "1").put("c", big)).await,
        Error::ValueTooLarge { .. },
        "an oversize value"
    );
    if caps.max_txn_ops < 10_000 {
        let mut txn = Txn::new();
        for i in 0..caps.max_txn_ops {
            txn = txn.put(format!("many/{i}"), "x");
        }
        let over = txn.clone().when("a", Condition::Exists);
        assert_err!(
            store.txn(over).await,
            Error::InvalidArgument { .. },
            "more than max_txn_ops ({})",
            caps.max_txn_ops
        );
        assert_eq!(
            snapshot(store).await,
            before,
            "refused txns changed nothing"
        );
        let results = store
            .txn(txn)
            .await
            .expect("exactly max_txn_ops operations");
        assert_eq!(results.len(), caps.max_txn_ops);
        assert_eq!(
            store.list("many").await.unwrap().len(),
            caps.max_txn_ops,
            "every put of the largest txn"
        );
    } else {
        assert_eq!(
            snapshot(store).await,
            before,
            "refused txns changed nothing"
        );
    }
    Outcome::Passed
}

/// A transaction's writes reach watchers as Put and Delete events with the versions `txn`
/// returned, and nothing else.
pub async fn txn_writes_are_watch_events(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    if let Some(outcome) = gated(store).await {
        return outcome;
    }
    let before = store
        .put("w/gone", b"x", PutOptions::default())
        .await
        .unwrap();
    let mut watch = store
        .watch_tree("w", WatchOptions::default().synced())
        .await
        .unwrap();
    next_event(&mut watch, "the initial state").await;
    let synced = next_event(&mut watch, "the synced marker").await;
    assert_eq!(synced.kind, EventKind::Synced);
    let txn = Txn::new()
        .when("w/gone", Condition::Exists)
        .put("w/a", "1")
        .put("w/b/c", "2")
        .delete("w/gone")
        .delete("w/never");
    let results = store.txn(txn).await.unwrap();
    let mut seen = BTreeSet::new();
    let mut delete_version = 0;
    for _ in 0..3 {
        let event = next_event(&mut watch, "the txn's events").await;
        let version = match event.kind {
            EventKind::Delete => {
                delete_version = event.version;
                0
            }
            _ => event.version,
        };
        seen.insert((event.key.to_string(), format!("{:?}", event.kind), version));
    }
    let version = |i: usize| results[i].version().unwrap();
    let expected: BTreeSet<_> = [
        ("w/a".to_owned(), "Put".to_owned(), version(0)),
        ("w/b/c".to_owned(), "Put".to_owned(), version(1)),
        ("w/gone".to_owned(), "Delete".to_owned(), 0),
    ]
    .into();
    assert_eq!(
        seen, expected,
        "one event per write, puts with txn's versions"
    );
    assert!(
        delete_version > before,
        "the delete's event version {delete_version} is above the state before ({before})"
    );
    expect_quiet(&mut watch, "no event for the delete of a missing key").await;
    Outcome::Passed
}

/// Concurrent transfers between two keys, each guarded by both keys' versions from two
/// handles: every committed one is applied whole, so the sum never changes.
pub async fn concurrent_txns_are_serializable(ctx: Ctx) -> Outcome {
    let store = ctx.store().clone();
    if let Some(outcome) = gated(&store).await {
        return outcome;
    }
    store
        .put("acct/a", b"100", PutOptions::default())
        .await
        .unwrap();
    store
        .put("acct/b", b"100", PutOptions::default())
        .await
        .unwrap();
    let other = ctx.another().await;
    let number = |p: &KvPair| -> i64 { std::str::from_utf8(&p.value).unwrap().parse().unwrap() };
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let store = if worker % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut committed = 0;
            for _ in 0..5 {
                let a = store.get("acct/a").await.unwrap().unwrap();
                let b = store.get("acct/b").await.unwrap().unwrap();
                let txn = Txn::new()
                    .when("acct/a", Condition::Version(a.version))
                    .when("acct/b", Condition::Version(b.version))
                    .put("acct/a", (number(&a) - 1).to_string())
                    .put("acct/b", (number(&b) + 1).to_string());
                match store.txn(txn).await {
                    Ok(_) => committed += 1,
                    Err(Error::Conflict { .. }) => {}
                    Err(e) => panic!("a transfer failed: {e}"),
                }
            }
            committed
        }));
    }
    let mut committed = 0;
    for task in tasks {
        committed += task.await.unwrap();
    }
    assert!(committed >= 1, "no transfer committed");
    let a = number(&store.get("acct/a").await.unwrap().unwrap());
    let b = number(&store.get("acct/b").await.unwrap().unwrap());
    assert_eq!(a + b, 200, "a transfer was applied in part");
    assert_eq!(
        a,
        100 - committed,
        "every committed transfer, and only those, applied"
    );
    Outcome::Passed
}

/// Under contention on a key it writes, a transaction whose conditions hold is applied, or fails
/// saying nothing was applied — never `Conflict`, which says a condition failed (a Consul
/// robustness run found a transaction that gave up after five reads of a busy key reported as
/// a `Conflict`).
pub async fn a_txn_is_never_refused_while_its_conditions_hold(ctx: Ctx) -> Outcome {
    let store = ctx.store().clone();
    if let Some(outcome) = gated(&store).await {
        return outcome;
    }
    let writers = [ctx.another().await, ctx.another().await];
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = writers
        .into_iter()
        .map(|writer| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let value = n.to_string();
                    let _ = writer
                        .put("busy/b", value.as_bytes(), PutOptions::default())
                        .await;
                }
            })
        })
        .collect();
    let mut refused = Vec::new();
    for round in 0..10 {
        let txn = Txn::new()
            .when("busy/a", Condition::Missing)
            .put("busy/a", "x")
            .put("busy/b", "txn");
        match store.txn(txn).await {
            Ok(_) => {
                store.delete("busy/a").await.unwrap();
            }
            Err(e @ Error::Conflict { .. }) => refused.push((round, e)),
            Err(_) => {}
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for writer in busy {
        writer.await.unwrap();
    }
    assert!(
        refused.is_empty(),
        "transactions whose condition held (busy/a missing) were refused: {refused:?}"
    );
    Outcome::Passed
}
