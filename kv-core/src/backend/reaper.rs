//! [`reap_expired`]: the loop of a backend that deletes expired values itself.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::backend::HandleState;

/// The longest a reaper sleeps: values whose TTL another process or client wrote are reaped
/// within this long of their expiry.
pub const REAP_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// Deletes expired values for a handle whose backend has no expiry of its own (SQLite, Redis):
/// `step` reaps what has expired and says how long until the next expiry (`None`: not known);
/// the loop calls it again then, when `wake` (a TTL write of this handle) fires, and at least
/// every [`REAP_AT_LEAST_EVERY`], never sooner than `min_wait` after the last step. It ends
/// when the handle closes or its state is dropped (the loop holds it only through `state`).
pub async fn reap_expired<S, F, Fut>(
    state: Weak<S>,
    parts: fn(&S) -> (&HandleState, &Notify),
    min_wait: Duration,
    mut step: F,
) where
    F: FnMut(Arc<S>) -> Fut,
    Fut: Future<Output = Option<Duration>>,
{
    loop {
        let Some(store) = state.upgrade() else { return };
        if parts(&store).0.is_cancelled() {
            return;
        }
        let wait = step(store.clone())
            .await
            .unwrap_or(REAP_AT_LEAST_EVERY)
            .clamp(min_wait, REAP_AT_LEAST_EVERY);
        let (closed, wake) = parts(&store);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = closed.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    struct State {
        closed: HandleState,
        wake: Notify,
        steps: AtomicU32,
    }

    #[tokio::test(start_paused = true)]
    async fn steps_at_the_next_expiry_at_least_every_second_and_ends_on_close() {
        let state = Arc::new(State {
            closed: HandleState::default(),
            wake: Notify::new(),
            steps: AtomicU32::new(0),
        });
        let reaper = tokio::spawn(reap_expired(
            Arc::downgrade(&state),
            |s: &State| (&s.closed, &s.wake),
            Duration::from_millis(1),
            |s: Arc<State>| async move {
                // Nothing known after the third step: the next one comes a second later.
                match s.steps.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Some(Duration::from_millis(100)),
                    _ => None,
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            state.steps.load(Ordering::SeqCst),
            3,
            "now, +100 ms, +200 ms"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            state.steps.load(Ordering::SeqCst),
            4,
            "a second after the last"
        );
        state.wake.notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            state.steps.load(Ordering::SeqCst),
            5,
            "woken by a TTL write"
        );
        state.closed.cancel();
        tokio::time::timeout(Duration::from_secs(5), reaper)
            .await
            .expect("the reaper ends when the handle closes")
            .expect("no panic");
    }
}
