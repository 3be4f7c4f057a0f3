//! Lease clients: grant a lease with a TTL of a few seconds, put a key with it, read it back
//! while holding (one time in three, where leases can be taken up by ID, after taking it up
//! on another handle and dropping the first, as a restarted process does), then revoke it or
//! stop renewing. Their operations join the history as
//! ordinary operations on their own keys (`l/...`), so the linearizability checker holds them
//! to the lease's promise:
//! - the put, and every read while holding, are get/put operations;
//! - the lease's end is a delete with an unknown outcome (it may happen at any time after, or
//!   never) *invoked* when the lease stopped being guaranteed: the earliest of its
//!   [`Lease::lost`](kv_core::Lease::lost) firing, its validity deadline, and the time the client
//!   dropped or revoked it. A read that finds the key gone before then has nothing to explain
//!   it; a revoke that succeeded is an acknowledged delete;
//! - and, in [`check`], every key whose lease was dropped is gone (and the watchers saw it go:
//!   [`super::watch`]'s final-state check) once its TTL has run out twice over, plus slack.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv_core::{PutOptions, Store};

use super::history::{Call, Op, Outcome};
use super::traffic::{classify, single};

/// A lease that was dropped (not revoked): by when its key must be gone.
#[derive(Debug, Clone)]
pub struct Dropped {
    /// The key put with it.
    pub key: String,
    /// Dropped at (ns since the run began).
    pub at: u64,
    /// The key must be gone by then (ns since the run began): TTL × 2 + slack after `at`
    /// (Consul ends a session between one and two TTLs after its last renewal), or when a
    /// revoke that said `Ok` returned.
    pub gone_by: u64,
    /// For a lease left to expire: TTL × 2 + slack, the time it may live again after a
    /// failover ([`after_failovers`]).
    pub span: Option<u64>,
}

/// The faults after which a new leader (or a restarted server) may start lease timers again.
const FAILOVERS: [&str; 8] = [
    "kill",
    "leader kill",
    "pause",
    "leader pause",
    "long pause",
    "leader long pause",
    "member partition",
    "leader partition",
];

/// Moves each expiring lease's deadline past the failovers that began before it: a new leader
/// starts lease timers again (etcd gives every lease its whole TTL, Consul and ZooKeeper
/// restart their session timers), so a key may live its span again after such a fault ends.
pub fn after_failovers(dropped: &mut [Dropped], faults: &[super::Fault]) {
    for lease in dropped.iter_mut() {
        let Some(span) = lease.span else { continue };
        loop {
            let later = faults
                .iter()
                .filter(|f| FAILOVERS.contains(&f.kind) && f.start < lease.gone_by)
                .map(|f| f.end + span)
                .max();
            match later {
                Some(later) if later > lease.gone_by => lease.gone_by = later,
                _ => break,
            }
        }
    }
}

/// The slack on top of two TTLs for a dropped lease's key to go.
const SLACK: Duration = Duration::from_secs(2);

/// Drives one lease client on `store` (and `other`, where it takes leases up by ID) until
/// `deadline`: one lease at a time with a TTL of 2–3 s (at least the backend's minimum), held
/// for 1–4 s. Operations go into `history`, dropped leases into `dropped`.
#[allow(clippy::too_many_arguments)]
pub async fn client(
    client: usize,
    store: Arc<dyn Store>,
    other: Arc<dyn Store>,
    seed: u64,
    began: Instant,
    deadline: Instant,
    history: Arc<Mutex<Vec<Op>>>,
    dropped: Arc<Mutex<Vec<Dropped>>>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let at = move || began.elapsed().as_nanos() as u64;
    let record = |op: Op| history.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    let min = store
        .capabilities()
        .ttl
        .as_ref()
        .map_or(Duration::from_secs(2), |t| t.min);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let ttl = Duration::from_millis(rng.u64(2000..3000)).max(min);
        let mut lease = match store.grant(ttl).await {
            Ok(lease) => lease,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let ttl = lease.ttl();
        n += 1;
        let key = format!("l/c{client}-{n}");
        let value = format!("l{client}-{n}");
        let lost_at = Arc::new(AtomicU64::new(u64::MAX));
        let follow = |lease: &kv_core::Lease| {
            let (lost, lost_at) = (lease.lost(), lost_at.clone());
            tokio::spawn(async move {
                lost.cancelled().await;
                lost_at.store(at(), Ordering::SeqCst);
            })
        };
        let mut watcher = follow(&lease);
        let start = at();
        let outcome = match store
            .put(&key, value.as_bytes(), PutOptions::default().lease(&lease))
            .await
        {
            Ok(version) => Outcome::Written(version),
            Err(e) => classify(&e),
        };
        let written = matches!(outcome, Outcome::Written(_) | Outcome::Unknown(_));
        let acknowledged = matches!(outcome, Outcome::Written(_));
        record(Op {
            client,
            key: key.clone(),
            call: Call::Put(value),
            outcome,
            start,
            end: at(),
        });
        if written && store.capabilities().attach_leases && rng.u8(0..3) == 0 {
            // Taken up on another handle; the first stops renewing (a process restarted with
            // the lease's ID). From now on, this lease's promise is the new handle's.
            if let Ok(attached) = other.attach_lease(lease.id()).await {
                watcher.abort();
                watcher = follow(&attached);
                drop(std::mem::replace(&mut lease, attached));
            }
        }
        let hold_until = Instant::now() + Duration::from_millis(rng.u64(1000..4000));
        while written && Instant::now() < hold_until.min(deadline) {
            tokio::time::sleep(Duration::from_millis(rng.u64(100..300))).await;
            let start = at();
            let outcome = single(&*store, &key, &Call::Get).await;
            record(Op {
                client,
                key: key.clone(),
                call: Call::Get,
                outcome,
                start,
                end: at(),
            });
        }
        // The lease is guaranteed no longer than its validity deadline (as this process
        // knows it) or until `lost` fired (read before a revoke, which fires it too).
        let until = lease.validity().until().map_or(u64::MAX, |t| {
            t.saturating_duration_since(began).as_nanos() as u64
        });
        let stopped = at();
        let guaranteed_until = stopped.min(until).min(lost_at.load(Ordering::SeqCst));
        let was_lost = lease.is_lost();
        let revoked = if rng.bool() {
            Some(lease.revoke().await)
        } else {
            None
        };
        let revoke_end = at();
        drop(lease);
        watcher.abort();
        if let (Some(Ok(())), false, true) = (&revoked, was_lost, acknowledged) {
            // A revoke of a lease still held: an acknowledged delete of an existing key.
            record(Op {
                client,
                key: key.clone(),
                call: Call::Delete,
                outcome: Outcome::Deleted(true),
                start: stopped,
                end: revoke_end,
            });
            continue;
        }
        // Expiry: at any time after the lease stopped being guaranteed, or never (the check
        // below says by when it must have happened).
        record(Op {
            client,
            key: key.clone(),
            call: Call::Delete,
            outcome: Outcome::Unknown(format!(
                "{EXPIRY}{}",
                revoked
                    .as_ref()
                    .map_or(String::new(), |r| format!(" (revoke: {r:?})"))
            )),
            start: guaranteed_until,
            end: u64::MAX,
        });
        if written {
            // A revoke that succeeded deleted the key by the time it returned.
            let span = (ttl * 2 + SLACK).as_nanos() as u64;
            let (gone_by, span) = match revoked {
                Some(Ok(())) => (revoke_end, None),
                _ => (stopped + span, Some(span)),
            };
            dropped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Dropped {
                    key: key.clone(),
                    at: stopped,
                    gone_by,
                    span,
                });
        }
    }
}

/// How the history marks a lease's expiry (an operation no client called).
pub const EXPIRY: &str = "lease expiry";

/// Keys whose lease was dropped and that were still there after their `gone_by` (`state`:
/// each key's final state, read after every `gone_by` passed).
pub fn check(
    dropped: &[Dropped],
    state: &std::collections::BTreeMap<String, Option<(String, u64)>>,
) -> Vec<String> {
    dropped
        .iter()
        .filter_map(|d| match state.get(&d.key) {
            Some(Some((value, version))) => Some(format!(
                "{} = {value} @ {version} outlived its lease: dropped at {:.1} ms, still there \
                 after {:.1} ms",
                d.key,
                d.at as f64 / 1e6,
                d.gone_by as f64 / 1e6
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::robustness::Fault;

    #[test]
    fn a_failover_gives_an_expiring_lease_its_span_again() {
        let ms = 1_000_000;
        let expiring = |at: u64| Dropped {
            key: "l/k".into(),
            at: at * ms,
            gone_by: (at + 6000) * ms,
            span: Some(6000 * ms),
        };
        let fault = |kind, start: u64, end: u64| Fault {
            kind,
            start: start * ms,
            end: end * ms,
        };
        let revoked = Dropped {
            span: None,
            ..expiring(1000)
        };
        let mut dropped = [expiring(1000), expiring(1000), revoked];
        let faults = [
            fault("member partition", 5000, 8000),
            // A client fault changes no leader.
            fault("partition", 13000, 14000),
            // Begins before the moved deadline (14 s): moves it again.
            fault("kill", 13500, 15000),
        ];
        after_failovers(&mut dropped[..1], &faults);
        assert_eq!(dropped[0].gone_by, 21000 * ms);
        after_failovers(&mut dropped[1..2], &faults[1..2]);
        assert_eq!(dropped[1].gone_by, 7000 * ms, "no failover, no change");
        after_failovers(&mut dropped[2..], &faults);
        assert_eq!(
            dropped[2].gone_by,
            7000 * ms,
            "a revoke that said Ok is not moved"
        );
    }
}
