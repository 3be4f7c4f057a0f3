//! Conditional writes.

use std::sync::Arc;

use kv_core::{Error, Precondition, PutOptions};

use crate::{Ctx, Outcome, assert_err};

/// `MustNotExist` and `Version(v)`: success, and conflict with nothing changed.
pub async fn atomic_put_preconditions(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let none = PutOptions::default;
    let v1 = store
        .atomic_put("k", b"1", Precondition::MustNotExist, none())
        .await
        .unwrap();
    assert_err!(
        store
            .atomic_put("k", b"x", Precondition::MustNotExist, none())
            .await,
        Error::Conflict { .. },
        "MustNotExist on an existing key"
    );
    let v2 = store
        .atomic_put("k", b"2", Precondition::Version(v1), none())
        .await
        .unwrap();
    assert!(v2 > v1);
    assert_err!(
        store
            .atomic_put("k", b"x", Precondition::Version(v1), none())
            .await,
        Error::Conflict { .. },
        "a stale version"
    );
    assert_err!(
        store
            .atomic_put("k", b"x", Precondition::Version(v2 + 1000), none())
            .await,
        Error::Conflict { .. },
        "a future version"
    );
    let pair = store.get("k").await.unwrap().expect("k");
    assert_eq!(
        (&pair.value[..], pair.version),
        (&b"2"[..], v2),
        "failed CAS changed nothing"
    );
    assert_err!(
        store
            .atomic_put("missing", b"x", Precondition::Version(v2), none())
            .await,
        Error::Conflict { .. },
        "Version on a missing key"
    );
    assert!(!store.exists("missing").await.unwrap());
    store.delete("k").await.unwrap();
    store
        .atomic_put("k", b"3", Precondition::MustNotExist, none())
        .await
        .expect("MustNotExist after delete");
    Outcome::Passed
}

/// `atomic_delete` deletes only the expected version.
pub async fn atomic_delete_preconditions(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let v1 = store.put("k", b"1", PutOptions::default()).await.unwrap();
    let v2 = store.put("k", b"2", PutOptions::default()).await.unwrap();
    assert_err!(
        store.atomic_delete("k", v1).await,
        Error::Conflict { .. },
        "a stale version"
    );
    assert_eq!(
        store.get("k").await.unwrap().expect("k survives").version,
        v2
    );
    store.atomic_delete("k", v2).await.unwrap();
    assert!(!store.exists("k").await.unwrap());
    assert_err!(
        store.atomic_delete("k", v2).await,
        Error::Conflict { .. },
        "a deleted key"
    );
    assert_err!(
        store.atomic_delete("never", 1).await,
        Error::Conflict { .. },
        "a missing key"
    );
    Outcome::Passed
}

/// Concurrent CAS from several handles: one winner per round, no lost update.
pub async fn concurrent_cas_has_one_winner(ctx: Ctx) -> Outcome {
    let stores = [ctx.store().clone(), ctx.another().await];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            store
                .atomic_put(
                    "race",
                    format!("{i}").as_bytes(),
                    Precondition::MustNotExist,
                    PutOptions::default(),
                )
                .await
                .is_ok()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one MustNotExist wins");

    ctx.store()
        .put("counter", b"0", PutOptions::default())
        .await
        .unwrap();
    let (workers, increments) = (4, 10);
    let mut tasks = Vec::new();
    for i in 0..workers {
        let store = Arc::clone(&stores[i % 2]);
        tasks.push(tokio::spawn(async move {
            for _ in 0..increments {
                loop {
                    let pair = store.get("counter").await.unwrap().expect("counter");
                    let n: u64 = std::str::from_utf8(&pair.value).unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    match store
                        .atomic_put(
                            "counter",
                            next.as_bytes(),
                            Precondition::Version(pair.version),
                            PutOptions::default(),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => continue,
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let value = ctx
        .store()
        .get("counter")
        .await
        .unwrap()
        .expect("counter")
        .value;
    assert_eq!(
        &value[..],
        (workers * increments).to_string().as_bytes(),
        "no increment was lost"
    );
    Outcome::Passed
}
