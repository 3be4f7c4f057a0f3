//! [`LeasedLock`]: the guard of a lock held on a lease, built the same way on every backend.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backend::{HandleState, Holdings};
use crate::error::Result;
use crate::key::Key;
use crate::lease::spawn_keep_alive;
use crate::lock::{LockGuard, ReleaseWith};

/// A lock just taken on a lease (an etcd lease, a Consul or ZooKeeper session, a row or hash
/// with an expiry), ready to become its [`LockGuard`]: recorded in the handle's
/// [`Holdings`] (so `close()` releases it), its lease renewed by
/// [`keep_alive`](crate::backend::keep_alive) until the guard is released or dropped or the
/// handle closes, `lost()` fired when the lease can no longer be vouched for.
pub struct LeasedLock<'a, T> {
    /// The lock's key.
    pub key: &'a Key,
    /// The fencing token the take returned.
    pub fencing_token: u64,
    /// The handle's state: renewal stops when it closes.
    pub closed: &'a HandleState,
    /// Where the handle records what it holds, and this lock's entry there.
    pub held: (&'a Holdings<T>, T),
    /// The lease's time to live.
    pub ttl: Duration,
    /// When the call that took (or last renewed) the lease was sent.
    pub renewed_sent: tokio::time::Instant,
}

impl<T> LeasedLock<'_, T> {
    /// The guard: `renew` is one renewal (`Ok(true)` renewed, `Ok(false)` the lease is gone,
    /// `Err` unknown), `release` lets go of the lock (`Ok(false)`: it had been lost) and must
    /// also forget the lock's entry in the holdings. Also returns the token that stops the
    /// renewal (on release, drop or close), for a backend that watches the lease otherwise too.
    pub fn guard<R, RFut, L, LFut>(self, renew: R, release: L) -> (LockGuard, CancellationToken)
    where
        R: FnMut() -> RFut + Send + 'static,
        RFut: Future<Output = Result<bool>> + Send + 'static,
        L: Fn() -> LFut + Send + Sync + 'static,
        LFut: Future<Output = Result<bool>> + Send + 'static,
    {
        let lost = CancellationToken::new();
        // Renewal stops on release or when the handle closes.
        let stop = self.closed.child_token();
        let (holdings, entry) = self.held;
        holdings.hold(entry, lost.clone());
        let valid = spawn_keep_alive(
            self.ttl,
            self.renewed_sent,
            stop.clone(),
            lost.clone(),
            renew,
        );
        let handle = ReleaseWith::new(self.key.clone(), stop.clone(), release);
        let guard = LockGuard::new(self.key.clone(), self.fencing_token, lost, Box::new(handle))
            .with_validity(valid);
        (guard, stop)
    }
}
