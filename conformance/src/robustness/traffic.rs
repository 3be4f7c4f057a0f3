//! The clients' traffic: random get, put (unique values), CAS (on the version the client last
//! saw, or "absent") and delete over a few shared keys, one operation at a time per client.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use kv_core::{Error, Precondition, PutOptions, Store};

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
        let (call, outcome) = if roll < 40 {
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
        } else if roll < 60 {
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
        } else if roll < 85 {
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
