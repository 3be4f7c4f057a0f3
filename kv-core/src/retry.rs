//! Retrying within a call's time budget: the one place backends get their deadline arithmetic
//! and backoff from.
//!
//! Which calls may be retried is the backend's to say (SEMANTICS, "Faults"): reads always;
//! writes only when the failed attempt is known to have applied nothing.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// First pause between attempts.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A call's time budget: a deadline, and exponential backoff with jitter between attempts
/// (from 50 ms, doubling up to 1 s, each pause 75–125 % of its nominal value, never past the
/// deadline).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// let mut budget = kv_core::backend::Budget::new(Duration::from_millis(200));
/// let mut attempts = 0;
/// loop {
///     attempts += 1; // ... try; on a retryable error:
///     if !budget.pause().await {
///         break; // out of time: return the last error
///     }
/// }
/// assert!(attempts >= 2);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Budget {
    deadline: Instant,
    total: Duration,
    pause: Duration,
    attempts: usize,
}

impl Budget {
    /// A budget of `total` from now.
    pub fn new(total: Duration) -> Budget {
        Budget {
            deadline: Instant::now() + total,
            total,
            pause: FIRST_PAUSE,
            attempts: 0,
        }
    }

    /// The whole budget, as given (for `Error::Timeout { after }`).
    pub fn total(&self) -> Duration {
        self.total
    }

    /// What is left of it.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once nothing is left.
    pub fn expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Whether to make another attempt: the first `immediate` at once, each later one after a
    /// [`Budget::pause`], while the budget allows one.
    pub async fn attempt(&mut self, immediate: usize) -> bool {
        self.attempts += 1;
        self.attempts <= immediate || self.pause().await
    }

    /// The attempts [`Budget::attempt`] allowed.
    pub fn attempts(&self) -> usize {
        self.attempts.saturating_sub(1)
    }

    /// Sleeps the next backoff pause and returns true, or returns false at once if the pause
    /// would end at or past the deadline (there is no time for another attempt).
    pub async fn pause(&mut self) -> bool {
        let pause = jittered(self.pause);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        if pause >= self.remaining() {
            return false;
        }
        tokio::time::sleep(pause).await;
        true
    }
}

/// Runs an idempotent call (a read, a connect) until it succeeds or fails with an error other
/// than [`Error::Unavailable`] (a refused, reset or lost connection: nothing was done), pausing
/// between attempts, all within `total`: each attempt is cut at what is left, and running out
/// is [`Error::Timeout`] for `operation` after `total`. Never use it for a write that may have
/// been applied.
pub async fn retry_idempotent<T, F, Fut>(
    operation: &'static str,
    total: Duration,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut budget = Budget::new(total);
    loop {
        match tokio::time::timeout(budget.remaining(), attempt()).await {
            Ok(Err(error @ Error::Unavailable { .. })) => {
                if !budget.pause().await {
                    return Err(error);
                }
            }
            Ok(outcome) => return outcome,
            Err(_) => {
                return Err(Error::Timeout {
                    operation,
                    after: total,
                });
            }
        }
    }
}

/// `nominal` × a random factor in [0.75, 1.25).
pub(crate) fn jittered(nominal: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.75 + (random % 1000) as f64 / 2000.0;
    nominal.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_grow_with_jitter_and_stop_at_the_deadline() {
        let started = Instant::now();
        let mut budget = Budget::new(Duration::from_secs(3));
        let mut pauses = Vec::new();
        let mut last = started;
        while budget.pause().await {
            pauses.push(last.elapsed());
            last = Instant::now();
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(pauses[0] >= FIRST_PAUSE.mul_f64(0.75) && pauses[0] < FIRST_PAUSE.mul_f64(1.25));
        assert!(pauses.iter().all(|p| *p < MAX_PAUSE.mul_f64(1.25)));
        assert!(pauses.windows(2).take(3).all(|w| w[1] > w[0]));
        assert!(pauses.len() >= 5, "{pauses:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn idempotent_calls_are_retried_while_unavailable_within_the_budget() {
        let mut calls = 0;
        let answer = retry_idempotent("get", Duration::from_secs(2), || {
            calls += 1;
            let n = calls;
            async move {
                match n {
                    1..=3 => Err(Error::unavailable("reset", None)),
                    _ => Ok(n),
                }
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 4);
        // Another error ends it at once.
        let mut calls = 0;
        let error = retry_idempotent("get", Duration::from_secs(2), || {
            calls += 1;
            async { Err::<(), _>(Error::invalid_argument("no")) }
        })
        .await
        .unwrap_err();
        assert!(matches!(error, Error::InvalidArgument { .. }) && calls == 1);
        // Out of time: the last error, or a timeout if the attempt itself hangs.
        let started = Instant::now();
        let error = retry_idempotent("get", Duration::from_secs(2), || async {
            Err::<(), _>(Error::unavailable("refused", None))
        })
        .await
        .unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }));
        assert!(started.elapsed() <= Duration::from_secs(2));
        let error = retry_idempotent("get", Duration::from_secs(2), || {
            std::future::pending::<Result<()>>()
        })
        .await
        .unwrap_err();
        assert!(matches!(error, Error::Timeout { after, .. } if after == Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_does_not_pause() {
        let mut budget = Budget::new(Duration::from_millis(10));
        assert!(!budget.pause().await);
        assert_eq!(budget.total(), Duration::from_millis(10));
    }
}
