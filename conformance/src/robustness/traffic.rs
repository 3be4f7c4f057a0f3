//! The clients' traffic: random get, put (unique values), CAS (on the version the client last
//! saw, or "absent"), delete, list and two-key transactions over a few shared keys, one
//! operation at a time per client. A list is recorded as one read per key (`Call::List`); a
//! transaction (a CAS on one key and a put of another, where the backend has transactions) as
//! a CAS and a put with the transaction's times, the put left out when the transaction was
//! refused (it applied nothing: a read of its value would have no write to explain it).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use kv_core::{Condition, Error, Precondition, PutOptions, Store, Txn, TxnOpResult};

use super::history::{Call, Op, Outcome};

/// Drives `store` until `deadline`, recording each operation into `history` (times since
/// `began`).
pub async fn client(
    client: usize,
    store: Arc<dyn Store>,
    keys: Vec<String>,
    seed: u64,
    began: Instant,
    deadline: Instant,
    history: Arc<Mutex<Vec<Op>>>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    // The version this client last saw per key, for its CASes.
    let mut seen: Vec<Option<u64>> = vec![None; keys.len()];
    let mut written = 0u64;
    let at = || began.elapsed().as_nanos() as u64;
    while Instant::now() < deadline {
        let k = rng.usize(0..keys.len());
        let key = &keys[k];
        let roll = rng.u8(0..100);
        let start = at();
        if roll >= 92 {
            let txns = store.capabilities().max_txn_ops >= 3 && keys.len() > 1;
            let ops = if roll < 96 || !txns {
                list(&*store, &keys).await
            } else {
                written += 1;
                let other = (k + 1 + rng.usize(0..keys.len() - 1)) % keys.len();
                let values = [
                    format!("c{client}-{written}"),
                    format!("c{client}-{written}t"),
                ];
                let ops = txn(&*store, [key, &keys[other]], seen[k], values).await;
                for (call, outcome) in &ops {
                    if let (Call::Cas(..) | Call::Put(_), Outcome::Written(v)) = (call, outcome) {
                        let index = if matches!(call, Call::Cas(..)) {
                            k
                        } else {
                            other
                        };
                        seen[index] = Some(*v);
                    }
                }
                ops.into_iter()
                    .zip([key.clone(), keys[other].clone()])
                    .map(|((call, outcome), key)| (key, call, outcome))
                    .collect()
            };
            let end = at();
            let mut history = history.lock().unwrap_or_else(|p| p.into_inner());
            for (key, call, outcome) in ops {
                history.push(Op {
                    client,
                    key,
                    call,
                    outcome,
                    start,
                    end,
                });
            }
            continue;
        }
        let (call, outcome) = if roll < 37 {
            let outcome = match store.get(key).await {
                Ok(pair) => Outcome::Read(pair.map(|p| {
                    seen[k] = Some(p.version);
                    (String::from_utf8_lossy(&p.value).into_owned(), p.version)
                })),
                Err(e) => classify(&e),
            };
            if matches!(outcome, Outcome::Read(None)) {
                seen[k] = None;
            }
            (Call::Get, outcome)
        } else if roll < 55 {
            written += 1;
            let value = format!("c{client}-{written}");
            let outcome = match store
                .put(key, value.as_bytes(), PutOptions::default())
                .await
            {
                Ok(version) => {
                    seen[k] = Some(version);
                    Outcome::Written(version)
                }
                Err(e) => classify(&e),
            };
            (Call::Put(value), outcome)
        } else if roll < 78 {
            written += 1;
            let value = format!("c{client}-{written}");
            let expected = seen[k];
            let precondition = match expected {
                Some(version) => Precondition::Version(version),
                None => Precondition::MustNotExist,
            };
            let outcome = match store
                .atomic_put(key, value.as_bytes(), precondition, PutOptions::default())
                .await
            {
                Ok(version) => {
                    seen[k] = Some(version);
                    Outcome::Written(version)
                }
                Err(Error::Conflict { .. }) => Outcome::Refused,
                Err(e) => classify(&e),
            };
            (Call::Cas(expected, value), outcome)
        } else {
            let outcome = match store.delete(key).await {
                Ok(existed) => {
                    seen[k] = None;
                    Outcome::Deleted(existed)
                }
                Err(e) => classify(&e),
            };
            (Call::Delete, outcome)
        };
        let end = at();
        let failed = matches!(outcome, Outcome::Failed(_) | Outcome::Unknown(_));
        history.lock().unwrap_or_else(|p| p.into_inner()).push(Op {
            client,
            key: key.clone(),
            call,
            outcome,
            start,
            end,
        });
        if failed {
            // As a service would: back off a little before the next call.
            tokio::time::sleep(std::time::Duration::from_millis(rng.u64(10..60))).await;
        }
    }
}

/// A list of the keys' prefix, as one read per key.
async fn list(store: &dyn Store, keys: &[String]) -> Vec<(String, Call, Outcome)> {
    let prefix = keys[0].rsplit_once('/').map_or("", |(p, _)| p);
    match store.list(prefix).await {
        Ok(pairs) => keys
            .iter()
            .map(|key| {
                let found = pairs
                    .iter()
                    .find(|p| p.key.as_str() == key)
                    .map(|p| (String::from_utf8_lossy(&p.value).into_owned(), p.version));
                (key.clone(), Call::List, Outcome::Read(found))
            })
            .collect(),
        Err(e) => keys
            .iter()
            .map(|key| (key.clone(), Call::List, classify(&e)))
            .collect(),
    }
}

/// A transaction: if `keys[0]` is at `expected` (or absent), put `values[0]` there and
/// `values[1]` at `keys[1]`. Returns what it means for each key (the second left out when the
/// transaction was refused).
async fn txn(
    store: &dyn Store,
    keys: [&String; 2],
    expected: Option<u64>,
    values: [String; 2],
) -> Vec<(Call, Outcome)> {
    let condition = expected.map_or(Condition::Missing, Condition::Version);
    let request = Txn::new()
        .when(keys[0].as_str(), condition)
        .put(keys[0].as_str(), values[0].clone().into_bytes())
        .put(keys[1].as_str(), values[1].clone().into_bytes());
    let [first, second] = values;
    let (cas, put) = (Call::Cas(expected, first), Call::Put(second));
    match store.txn(request).await {
        Ok(results) => {
            let version = |i: usize| match results.get(i) {
                Some(TxnOpResult::Put { version }) => Outcome::Written(*version),
                other => Outcome::Unknown(format!("untyped: a txn put answered {other:?}")),
            };
            vec![(cas, version(0)), (put, version(1))]
        }
        Err(Error::Conflict { .. }) => vec![(cas, Outcome::Refused)],
        Err(e) => {
            let outcome = classify(&e);
            vec![(cas, outcome.clone()), (put, outcome)]
        }
    }
}

/// What an error tells about the operation: nothing applied, or unknown. Only the errors the
/// contract defines as "nothing was sent or applied" count as failed; an untyped
/// (`Backend`) error is unknown, and the run reports it.
pub fn classify(error: &Error) -> Outcome {
    match error {
        e if e.is_outcome_unknown() => Outcome::Unknown(format!("{e}")),
        Error::Unavailable { .. } => Outcome::Failed(format!("unavailable: {error}")),
        Error::Backend(_) => Outcome::Unknown(format!("untyped: {error}")),
        other => Outcome::Failed(format!("{other}")),
    }
}
