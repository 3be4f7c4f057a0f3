//! Lock clients and a fenced resource: holders of one lock write to a resource that accepts
//! only fencing tokens at least as great as the greatest it has accepted, as a database row
//! guarded by a token would. Checked as it happens, under one mutex (this process's clock is
//! the only one involved):
//! - when a client's `acquire` returns, no other holder is still holding: every earlier guard
//!   was released, or its `lost()` had fired (the promise: a holder is told before anyone else
//!   can take the lock);
//! - fencing tokens increase from one holder to the next;
//! - the resource never refuses a write from a holder whose `lost()` has not fired (a refusal
//!   means a later holder has written: two holders at once).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv_core::CancellationToken as Token;
use kv_core::{LockOptions, Store};

/// The lock the clients contend for.
pub const LOCK_KEY: &str = "locks/robustness";

/// One holding of the lock.
#[derive(Debug, Clone)]
pub struct Hold {
    /// The client.
    pub client: usize,
    /// Its fencing token.
    pub token: u64,
    /// When `acquire` returned (ns since the run began).
    pub acquired: u64,
    /// When the client began to release (or dropped the guard); `None` while holding.
    pub released: Option<u64>,
    /// Writes the resource accepted from it.
    pub writes: usize,
}

struct Active {
    hold: usize,
    lost: Token,
}

/// The resource and the lock's holders, checked as they act.
#[derive(Default)]
pub struct Resource {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    holds: Vec<Hold>,
    active: Vec<Active>,
    greatest_token: u64,
    greatest_written: u64,
    refused: usize,
    problems: Vec<String>,
}

impl Resource {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client's `acquire` returned a guard: checks that nobody else still holds.
    fn acquired(&self, client: usize, token: u64, lost: Token, at: u64) -> usize {
        let mut state = self.state();
        let others: Vec<String> = state
            .active
            .iter()
            .filter(|a| !a.lost.is_cancelled())
            .map(|a| {
                let h = &state.holds[a.hold];
                format!(
                    "c{} (token {}, acquired at {:.1} ms)",
                    h.client,
                    h.token,
                    h.acquired as f64 / 1e6
                )
            })
            .collect();
        if !others.is_empty() {
            state.problems.push(format!(
                "c{client} acquired the lock (token {token}) at {:.1} ms while {} still held \
                 it and had not been told (lost() had not fired)",
                at as f64 / 1e6,
                others.join(", ")
            ));
        }
        if token <= state.greatest_token {
            let greatest = state.greatest_token;
            state.problems.push(format!(
                "c{client} acquired the lock at {:.1} ms with fencing token {token}, not above \
                 an earlier holder's {greatest}",
                at as f64 / 1e6
            ));
        }
        state.greatest_token = state.greatest_token.max(token);
        state.holds.push(Hold {
            client,
            token,
            acquired: at,
            released: None,
            writes: 0,
        });
        let hold = state.holds.len() - 1;
        state.active.push(Active { hold, lost });
        hold
    }

    /// A holder writes with its token: refused if a greater token has written.
    fn write(&self, hold: usize, at: u64) {
        let mut state = self.state();
        let token = state.holds[hold].token;
        if token >= state.greatest_written {
            state.greatest_written = token;
            state.holds[hold].writes += 1;
            return;
        }
        state.refused += 1;
        let lost = state
            .active
            .iter()
            .find(|a| a.hold == hold)
            .is_none_or(|a| a.lost.is_cancelled());
        if !lost {
            let (client, greatest) = (state.holds[hold].client, state.greatest_written);
            state.problems.push(format!(
                "the resource refused c{client}'s write with token {token} at {:.1} ms (token \
                 {greatest} had written): it held the lock as far as it knew (lost() had not \
                 fired), so two clients held it at once",
                at as f64 / 1e6
            ));
        }
    }

    /// The holder begins to release: it no longer holds.
    fn released(&self, hold: usize, at: u64) {
        let mut state = self.state();
        state.holds[hold].released = Some(at);
        state.active.retain(|a| a.hold != hold);
    }

    /// What happened: the holdings, refused writes and the violations found.
    pub fn outcome(&self) -> (Vec<Hold>, usize, Vec<String>) {
        let state = self.state();
        (state.holds.clone(), state.refused, state.problems.clone())
    }
}

/// Drives one lock client on `store` until `deadline`: acquire (giving up after 3 s), write
/// to `resource` every 50–150 ms while `lost()` has not fired for 0.2–1.5 s, then release
/// (or, one time in ten, drop the guard).
pub async fn client(
    client: usize,
    store: Arc<dyn Store>,
    seed: u64,
    began: Instant,
    deadline: Instant,
    resource: Arc<Resource>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let at = || began.elapsed().as_nanos() as u64;
    let options = LockOptions::default().ttl(Duration::from_secs(2));
    let lock = loop {
        match store.new_lock(LOCK_KEY, options.clone()).await {
            Ok(lock) => break lock,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(_) => return,
        }
    };
    while Instant::now() < deadline {
        let guard = match tokio::time::timeout(Duration::from_secs(3), lock.acquire()).await {
            Ok(Ok(guard)) => guard,
            Ok(Err(_)) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(rng.u64(50..200))).await;
                continue;
            }
        };
        let hold = resource.acquired(client, guard.fencing_token(), guard.lost(), at());
        let until = Instant::now() + Duration::from_millis(rng.u64(200..1500));
        while Instant::now() < until && !guard.is_lost() {
            resource.write(hold, at());
            tokio::time::sleep(Duration::from_millis(rng.u64(50..150))).await;
        }
        resource.released(hold, at());
        if rng.u8(0..10) == 0 {
            drop(guard);
        } else {
            let _ = guard.release().await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..100))).await;
    }
}
