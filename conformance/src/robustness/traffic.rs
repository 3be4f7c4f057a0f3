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

/// Where a client's operations go: the run's history (a client task), or lines on stdout (a
/// client process, which the runner may kill between an invocation and its return).
pub trait Recorder: Send + Sync {
    /// An operation is about to be invoked.
    fn invoke(&self, _client: usize, _key: &str, _call: &Call, _start: u64) {}

    /// It returned.
    fn complete(&self, op: Op);
}

impl Recorder for Mutex<Vec<Op>> {
    fn complete(&self, op: Op) {
        self.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }
}

/// How a transaction's put is recorded when the transaction was refused (it applied nothing;
/// not a failure of the call).
pub const REFUSED_WITH_TXN: &str = "refused with its transaction";

/// Drives `store` until `deadline`, recording each operation with `history` (times since
/// `began`).
pub async fn client(
    client: usize,
    store: Arc<dyn Store>,
    keys: Vec<String>,
    seed: u64,
    began: Instant,
    deadline: Instant,
    history: Arc<dyn Recorder>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    // The version this client last saw per key, for its CASes.
    let mut seen: Vec<Option<u64>> = vec![None; keys.len()];
    let mut written = 0u64;
    let at = || began.elapsed().as_nanos() as u64;
    let txns = store.capabilities().max_txn_ops >= 3 && keys.len() > 1;
    while Instant::now() < deadline {
        let k = rng.usize(0..keys.len());
        let key = &keys[k];
        let roll = rng.u8(0..100);
        let mut value = || {
            written += 1;
            format!("c{client}-{written}")
        };
        let other = (k + 1 + rng.usize(0..keys.len().max(2) - 1)) % keys.len();
        let calls: Vec<(usize, Call)> = match roll {
            0..37 => vec![(k, Call::Get)],
            37..55 => vec![(k, Call::Put(value()))],
            55..78 => vec![(k, Call::Cas(seen[k], value()))],
            78..92 => vec![(k, Call::Delete)],
            92..96 => (0..keys.len()).map(|i| (i, Call::List)).collect(),
            _ if !txns => (0..keys.len()).map(|i| (i, Call::List)).collect(),
            _ => {
                let first = value();
                let second = format!("{first}t");
                vec![(k, Call::Cas(seen[k], first)), (other, Call::Put(second))]
            }
        };
        let start = at();
        for (i, call) in &calls {
            history.invoke(client, &keys[*i], call, start);
        }
        let outcomes: Vec<Outcome> = match calls.as_slice() {
            [(_, Call::List), ..] => list(&*store, &keys).await,
            [(_, Call::Cas(expected, first)), (_, Call::Put(second))] => {
                txn(&*store, [key, &keys[other]], *expected, [first, second]).await
            }
            [(_, call)] => vec![single(&*store, key, call).await],
            _ => unreachable!("the calls above"),
        };
        let end = at();
        let mut failed = false;
        for ((i, call), outcome) in calls.into_iter().zip(outcomes) {
            match (&call, &outcome) {
                (Call::Get | Call::List, Outcome::Read(read)) => {
                    seen[i] = read.as_ref().map(|(_, v)| *v);
                }
                (Call::Put(_) | Call::Cas(..), Outcome::Written(v)) => seen[i] = Some(*v),
                (Call::Delete, Outcome::Deleted(_)) => seen[i] = None,
                (_, Outcome::Failed(_) | Outcome::Unknown(_)) => failed = true,
                _ => {}
            }
            history.complete(Op {
                client,
                key: keys[i].clone(),
                call,
                outcome,
                start,
                end,
            });
        }
        if failed {
            // As a service would: back off a little before the next call.
            tokio::time::sleep(std::time::Duration::from_millis(rng.u64(10..60))).await;
        }
    }
}

/// One get, put, CAS or delete, and what its answer means.
pub(super) async fn single(store: &dyn Store, key: &str, call: &Call) -> Outcome {
    let answer = match call {
        Call::Get | Call::List => store.get(key).await.map(|pair| {
            Outcome::Read(pair.map(|p| (String::from_utf8_lossy(&p.value).into_owned(), p.version)))
        }),
        Call::Put(value) => store
            .put(key, value.as_bytes(), PutOptions::default())
            .await
            .map(Outcome::Written),
        Call::Cas(expected, value) => {
            let precondition = match expected {
                Some(version) => Precondition::Version(*version),
                None => Precondition::MustNotExist,
            };
            match store
                .atomic_put(key, value.as_bytes(), precondition, PutOptions::default())
                .await
            {
                Err(Error::Conflict { .. }) => Ok(Outcome::Refused),
                answer => answer.map(Outcome::Written),
            }
        }
        Call::Delete => store.delete(key).await.map(Outcome::Deleted),
    };
    answer.unwrap_or_else(|e| classify(&e))
}

/// A list of the keys' prefix: what it says of each key.
async fn list(store: &dyn Store, keys: &[String]) -> Vec<Outcome> {
    let prefix = keys[0].rsplit_once('/').map_or("", |(p, _)| p);
    match store.list(prefix).await {
        Ok(pairs) => keys
            .iter()
            .map(|key| {
                Outcome::Read(
                    pairs
                        .iter()
                        .find(|p| p.key.as_str() == key)
                        .map(|p| (String::from_utf8_lossy(&p.value).into_owned(), p.version)),
                )
            })
            .collect(),
        Err(e) => keys.iter().map(|_| classify(&e)).collect(),
    }
}

/// A transaction: if `keys[0]` is at `expected` (or absent), put `values[0]` there and
/// `values[1]` at `keys[1]`. Returns what it means for each key: a refused transaction
/// applied nothing ([`REFUSED_WITH_TXN`] for its put).
async fn txn(
    store: &dyn Store,
    keys: [&String; 2],
    expected: Option<u64>,
    values: [&String; 2],
) -> Vec<Outcome> {
    let condition = expected.map_or(Condition::Missing, Condition::Version);
    let request = Txn::new()
        .when(keys[0].as_str(), condition)
        .put(keys[0].as_str(), values[0].clone().into_bytes())
        .put(keys[1].as_str(), values[1].clone().into_bytes());
    match store.txn(request).await {
        Ok(results) => {
            let version = |i: usize| match results.get(i) {
                Some(TxnOpResult::Put { version }) => Outcome::Written(*version),
                other => Outcome::Unknown(format!("untyped: a txn put answered {other:?}")),
            };
            vec![version(0), version(1)]
        }
        Err(Error::Conflict { .. }) => {
            vec![Outcome::Refused, Outcome::Failed(REFUSED_WITH_TXN.into())]
        }
        Err(e) => vec![classify(&e), classify(&e)],
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
