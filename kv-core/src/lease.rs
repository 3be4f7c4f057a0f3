//! Lease keep-alive shared by the networked backends' locks: one place decides when a held
//! lock must be reported lost.
//!
//! The rule (docs/SEMANTICS.md, "Lock safety"): `lost()` fires no later than the time the last
//! successful renewal was *sent*, plus the TTL, minus [`safety_margin`]. The server starts a
//! renewed lease's clock when the renewal *arrives*, which is after it was sent, so the holder is
//! told before the server can give the lock to anyone else. The deadline is a local timer: a
//! renewal call that hangs (a partition that holds traffic, a paused server) is abandoned at the
//! deadline instead of being waited for.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::error::Result;

/// How much earlier than the lease's end `lost()` fires: a tenth of the TTL, for timer and
/// clock-rate differences between client and server and for the time to act on `lost()`.
pub fn safety_margin(ttl: Duration) -> Duration {
    ttl / 10
}

/// The time by which a lease renewed by a call sent at `sent` must be considered lost.
pub fn lease_deadline(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl.saturating_sub(safety_margin(ttl))
}

/// Until when a held lock, lease or leadership is guaranteed: the deadline at which `lost()`
/// fires unless a renewal moves it on ([`lease_deadline`] of the last renewal sent). A guard
/// that outlives its holder — a process watching over a command, say — stops acting at this
/// time even if the holder is frozen and never gets to see `lost()`. Unknown (`None`) for
/// locks not renewed on a timer (in-process locks).
#[derive(Clone, Debug)]
pub struct Validity {
    until: Arc<watch::Sender<Option<std::time::Instant>>>,
    ttl: Arc<std::sync::OnceLock<Duration>>,
}

impl Validity {
    /// The validity of a lease of `ttl` created or renewed by a call sent at `sent`, which
    /// [`keep_alive`] then moves on: known from the start, before the keep-alive task runs.
    pub fn from_renewal(ttl: Duration, sent: impl Into<Instant>) -> Validity {
        let valid = Validity::new();
        valid.set(ttl, lease_deadline(sent.into(), ttl).into_std());
        valid
    }

    /// A validity with no deadline (a lock or lease not renewed on a timer).
    pub fn new() -> Validity {
        Validity {
            until: Arc::new(watch::Sender::new(None)),
            ttl: Arc::default(),
        }
    }

    /// For backends: the guarantee of a lease of `ttl` now runs until `until`.
    pub fn set(&self, ttl: Duration, until: std::time::Instant) {
        let _ = self.ttl.set(ttl);
        self.until.send_replace(Some(until));
    }

    /// The current deadline, if one is known.
    pub fn until(&self) -> Option<std::time::Instant> {
        *self.until.borrow()
    }

    /// True once the deadline has passed, whether or not the timer that fires `lost()` has
    /// run yet (a process that was stopped, or a starved runtime, reads the clock first).
    pub fn expired(&self) -> bool {
        self.until()
            .is_some_and(|until| std::time::Instant::now() >= until)
    }

    /// The TTL the deadline is counted with, once known; [`safety_margin`] of it is how much
    /// earlier than the server's expiry the deadline falls.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl.get().copied()
    }

    /// Follows the deadline: the receiver sees each new one.
    pub fn watch(&self) -> watch::Receiver<Option<std::time::Instant>> {
        self.until.subscribe()
    }
}

impl Default for Validity {
    fn default() -> Validity {
        Validity::new()
    }
}

/// Spawns [`keep_alive`] for a lease of `ttl` created or renewed by a call sent at `sent`, and
/// returns the validity it keeps (known at once, before the task first runs).
pub fn spawn_keep_alive<F, Fut>(
    ttl: Duration,
    sent: Instant,
    stop: CancellationToken,
    lost: CancellationToken,
    renew: F,
) -> Validity
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<bool>> + Send + 'static,
{
    let valid = Validity::from_renewal(ttl, sent);
    tokio::spawn(keep_alive(ttl, sent, stop, lost, valid.clone(), renew));
    valid
}

/// Renews a lease until `stop` fires, and fires `lost` (then returns) when the lease can no
/// longer be guaranteed; `valid` follows the deadline `lost` would fire at.
///
/// - `renewed_sent`: when the call that created or last renewed the lease was sent.
/// - `renew`: one renewal call: `Ok(true)` renewed, `Ok(false)` the server no longer holds the
///   lease (lost at once), `Err(_)` unknown (retried until the deadline).
///
/// Renewals are sent every third of the TTL, retried sooner after a failure, and each one is
/// abandoned when the deadline ([`lease_deadline`]) passes; `lost` then fires at the deadline,
/// never later.
pub async fn keep_alive<F, Fut>(
    ttl: Duration,
    renewed_sent: Instant,
    stop: CancellationToken,
    lost: CancellationToken,
    valid: Validity,
    mut renew: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let every = ttl / 3;
    let retry = (every / 4).max(Duration::from_millis(10));
    let mut deadline = lease_deadline(renewed_sent, ttl);
    valid.set(ttl, deadline.into_std());
    let mut next = renewed_sent + every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep_until(next.min(deadline)) => {}
        }
        if Instant::now() >= deadline {
            lost.cancel();
            return;
        }
        let sent = Instant::now();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep_until(deadline) => {
                tracing::warn!(target: "kv", ?ttl, "lease renewal unanswered at the deadline: lost");
                lost.cancel();
                return;
            }
            renewed = renew() => match renewed {
                Ok(true) => {
                    deadline = lease_deadline(sent, ttl);
                    valid.set(ttl, deadline.into_std());
                    next = sent + every;
                }
                Ok(false) => {
                    tracing::warn!(target: "kv", ?ttl, "the server no longer holds the lease: lost");
                    lost.cancel();
                    return;
                }
                Err(error) => {
                    tracing::warn!(target: "kv", %error, ?ttl, "lease renewal failed; retrying until the deadline");
                    next = Instant::now() + retry;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    const TTL: Duration = Duration::from_secs(3);

    #[tokio::test(start_paused = true)]
    async fn renewals_keep_the_lease() {
        let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let valid = Validity::new();
        let start = Instant::now();
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let task = tokio::spawn(keep_alive(
            TTL,
            Instant::now(),
            stop.clone(),
            lost.clone(),
            valid.clone(),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok(true) }
            },
        ));
        tokio::time::sleep(TTL * 10).await;
        assert!(!lost.is_cancelled());
        let until = valid.until().expect("a deadline");
        assert!(
            until > (start + TTL * 10).into_std()
                && until <= (Instant::now() + TTL - safety_margin(TTL)).into_std(),
            "the validity follows the renewals: the last one sent plus TTL - margin"
        );
        assert!(
            calls.load(Ordering::SeqCst) >= 28,
            "renewed every third of the TTL"
        );
        stop.cancel();
        task.await.unwrap();
        assert!(!lost.is_cancelled(), "stopping is not losing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_renewal_is_lost_at_the_deadline_not_when_the_call_returns() {
        let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let start = Instant::now();
        let task = tokio::spawn(keep_alive(
            TTL,
            start,
            stop,
            lost.clone(),
            Validity::new(),
            // A partition: the call never answers.
            std::future::pending::<Result<bool>>,
        ));
        lost.cancelled().await;
        assert_eq!(Instant::now() - start, TTL - safety_margin(TTL));
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn failing_renewals_are_retried_and_lost_at_the_deadline() {
        let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let start = Instant::now();
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        tokio::spawn(keep_alive(
            TTL,
            start,
            stop,
            lost.clone(),
            Validity::new(),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Err(crate::Error::unavailable("refused", None)) }
            },
        ));
        lost.cancelled().await;
        assert_eq!(Instant::now() - start, TTL - safety_margin(TTL));
        assert!(calls.load(Ordering::SeqCst) > 3, "retried after failures");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_the_server_dropped_is_lost_at_once() {
        let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let start = Instant::now();
        tokio::spawn(keep_alive(
            TTL,
            start,
            stop,
            lost.clone(),
            Validity::new(),
            || async { Ok(false) },
        ));
        lost.cancelled().await;
        assert_eq!(Instant::now() - start, TTL / 3);
    }
}
