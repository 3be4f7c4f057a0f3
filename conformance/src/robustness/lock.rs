//! Lock clients and a fenced resource. Holders of one lock write to a resource with their
//! fencing token, each write made only after `is_lost()` said the lock was still held; a
//! resource that accepts only tokens at least as great as the greatest it has seen refuses a
//! write exactly when a later holder has written first. Every holder records when `acquire`
//! returned and when each check said "held" (on one clock: the machine's monotonic clock,
//! shared with client processes), and [`Holds::check`] proves afterwards:
//! - of two holders, the one with the smaller token was last told "held" before the other's
//!   `acquire` returned (the promise: a holder is told before anyone else can take the lock;
//!   otherwise the resource would refuse a write of a holder that believed it held the lock);
//! - no fencing token is handed out twice.
//!
//! Holders run as tasks of the runner and as client processes (`super::process`), which the
//! nemesis pauses past their TTL.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv_core::{LockOptions, Store};

/// The lock the clients contend for.
pub const LOCK_KEY: &str = "locks/robustness";

/// One holding of the lock.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    /// The client.
    pub client: usize,
    /// Its fencing token.
    pub token: u64,
    /// When `acquire` returned (ns since the run began).
    pub acquired: u64,
    /// The last time a check said the lock was held (a write to the resource followed).
    pub last_held: Option<u64>,
    /// Writes made (checks that said "held").
    pub writes: usize,
}

/// Where a lock client reports what it does: [`Holds`] in the runner, lines on stdout in a
/// client process.
pub trait LockLog: Send + Sync {
    /// `acquire` returned a guard with `token` at `at`.
    fn acquired(&self, client: usize, token: u64, at: u64);
    /// At `at`, `is_lost()` said the lock was held, and the client wrote.
    fn held(&self, client: usize, token: u64, at: u64);
}

/// The holdings of a run, by (client, token).
#[derive(Debug, Default)]
pub struct Holds {
    holds: Mutex<BTreeMap<(usize, u64), Hold>>,
}

impl LockLog for Holds {
    fn acquired(&self, client: usize, token: u64, at: u64) {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let hold = holds.entry((client, token)).or_default();
        (hold.client, hold.token, hold.acquired) = (client, token, at);
    }

    fn held(&self, client: usize, token: u64, at: u64) {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let hold = holds.entry((client, token)).or_default();
        (hold.client, hold.token) = (client, token);
        hold.last_held = Some(hold.last_held.map_or(at, |t| t.max(at)));
        hold.writes += 1;
    }
}

impl Holds {
    /// Every holding, by token.
    pub fn all(&self) -> Vec<Hold> {
        let holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<Hold> = holds.values().cloned().collect();
        all.sort_by_key(|h| (h.token, h.acquired));
        all
    }

    /// The violations (see the module doc), one line each.
    pub fn check(&self) -> Vec<String> {
        let all = self.all();
        let mut problems = Vec::new();
        let ms = |ns: u64| ns as f64 / 1e6;
        for pair in all.windows(2) {
            if pair[0].token == pair[1].token {
                problems.push(format!(
                    "fencing token {} was handed to c{} and c{}",
                    pair[0].token, pair[0].client, pair[1].client
                ));
            }
        }
        for (i, earlier) in all.iter().enumerate() {
            let Some(last) = earlier.last_held else {
                continue;
            };
            if let Some(later) = all[i + 1..]
                .iter()
                .find(|l| l.token > earlier.token && l.acquired <= last)
            {
                problems.push(format!(
                    "two holders: c{} (token {}) was told it held the lock at {:.1} ms, after \
                     c{} had acquired it (token {}) at {:.1} ms; the resource would have \
                     refused a write of a holder that believed it held the lock",
                    earlier.client,
                    earlier.token,
                    ms(last),
                    later.client,
                    later.token,
                    ms(later.acquired)
                ));
            }
        }
        problems
    }
}

/// Drives one lock client on `store` until `deadline`: acquire (giving up after 3 s), write
/// every 50–150 ms while `is_lost()` says held, for 0.2–1.5 s, then release (or, one time in
/// ten, drop the guard). TTL 2 s.
pub async fn client(
    client: usize,
    store: Arc<dyn Store>,
    seed: u64,
    began: Instant,
    deadline: Instant,
    log: Arc<dyn LockLog>,
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
        let token = guard.fencing_token();
        log.acquired(client, token, at());
        let until = Instant::now() + Duration::from_millis(rng.u64(200..1500));
        while Instant::now() < until {
            // The time is taken before the check: the lock was held at least until then.
            let now = at();
            if guard.is_lost() {
                break;
            }
            log.held(client, token, now);
            tokio::time::sleep(Duration::from_millis(rng.u64(50..150))).await;
        }
        if rng.u8(0..10) == 0 {
            drop(guard);
        } else {
            let _ = guard.release().await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..100))).await;
    }
}
