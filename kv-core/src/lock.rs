//! Distributed locks with leases and fencing tokens.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::key::Key;
use crate::lease::Validity;

/// A lock on a key (or a subtree), from [`Store::new_lock`](crate::Store::new_lock).
///
/// Acquiring gives a [`LockGuard`]; the lock is held until the guard is released or dropped,
/// or until its lease can no longer be renewed ([`LockGuard::lost`]).
#[async_trait]
pub trait Lock: Send + Sync + fmt::Debug {
    /// The locked key.
    fn key(&self) -> &Key;

    /// Waits until the lock is free and takes it. Dropping the future abandons the wait and
    /// leaves nothing behind.
    async fn acquire(&self) -> Result<LockGuard>;

    /// Takes the lock if it is free now; `None` if someone else holds it (or a conflicting
    /// subtree lock).
    async fn try_acquire(&self) -> Result<Option<LockGuard>>;

    /// Who holds exactly this lock now, if anyone (for leader discovery).
    async fn holder(&self) -> Result<Option<LockHolder>>;
}

/// The current holder of a lock, as seen by anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The holder's [`LockOptions::value`](crate::LockOptions::value).
    pub value: Bytes,
    /// The holder's fencing token.
    pub fencing_token: u64,
}

/// The backend's side of a held lock: renewal is the backend's business, release goes here.
#[async_trait]
pub trait LeaseHandle: Send + Sync + 'static {
    /// Releases the lock and stops renewing; [`Error::LockLost`](crate::Error::LockLost) if it
    /// had already been lost.
    async fn release(&mut self) -> Result<()>;

    /// Releases without waiting, from `Drop` (may spawn a task or do it synchronously).
    fn release_in_background(&mut self);
}

/// A [`LeaseHandle`] for backends whose release is one async call: `stop` ends the background
/// renewal, and `release` returns whether the lease still held the lock.
pub struct ReleaseWith<F> {
    key: Key,
    stop: CancellationToken,
    release: F,
}

impl<F, Fut> ReleaseWith<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool>> + Send + 'static,
{
    /// A handle releasing the lock on `key` with `release`.
    pub fn new(key: Key, stop: CancellationToken, release: F) -> ReleaseWith<F> {
        ReleaseWith { key, stop, release }
    }
}

#[async_trait]
impl<F, Fut> LeaseHandle for ReleaseWith<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool>> + Send + 'static,
{
    async fn release(&mut self) -> Result<()> {
        self.stop.cancel();
        if (self.release)().await? {
            Ok(())
        } else {
            Err(crate::Error::LockLost {
                key: self.key.to_string(),
            })
        }
    }

    /// Spawns the release on the current tokio runtime; without one, the lease simply expires.
    fn release_in_background(&mut self) {
        self.stop.cancel();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn((self.release)());
        }
    }
}

/// A held lock. Its lease is renewed in the background until [`LockGuard::release`] or drop.
///
/// Protect writes made under the lock with [`LockGuard::fencing_token`], and stop working when
/// [`LockGuard::lost`] fires: after that, another holder may exist.
pub struct LockGuard {
    key: Key,
    fencing_token: u64,
    lost: CancellationToken,
    valid: Validity,
    handle: Option<Box<dyn LeaseHandle>>,
}

impl LockGuard {
    /// For backends: a guard over a held lease. `lost` must be cancelled by the backend when
    /// the lease expires or cannot be renewed.
    pub fn new(
        key: Key,
        fencing_token: u64,
        lost: CancellationToken,
        handle: Box<dyn LeaseHandle>,
    ) -> LockGuard {
        LockGuard {
            key,
            fencing_token,
            lost,
            valid: Validity::new(),
            handle: Some(handle),
        }
    }

    /// For backends: the guard of a lock renewed on a timer, whose deadline `valid` follows
    /// ([`crate::backend::keep_alive`] keeps it).
    pub fn with_validity(mut self, valid: Validity) -> LockGuard {
        self.valid = valid;
        self
    }

    /// Until when the lock is guaranteed, as far as this process knows: the deadline
    /// [`LockGuard::lost`] fires at unless a renewal moves it on (unknown for locks not
    /// renewed on a timer). `kvctl lock` hands it to a watchdog process that stops the command
    /// at that time even if kvctl is frozen.
    pub fn validity(&self) -> Validity {
        self.valid.clone()
    }

    /// The locked key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The same held lock, named by `key` (a wrapper that renames keys, such as
    /// [`PrefixStore`](crate::PrefixStore), shows its own).
    pub(crate) fn with_key(mut self, key: Key) -> LockGuard {
        LockGuard {
            key,
            fencing_token: self.fencing_token,
            lost: self.lost.clone(),
            valid: self.valid.clone(),
            handle: self.handle.take(),
        }
    }

    /// Strictly increasing across successive holders of this lock: pass it along with writes
    /// so that a resource can refuse writes from a holder that has since lost the lock — for
    /// keys of this store, [`StoreExt::claim_fence`](crate::StoreExt::claim_fence).
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// Fires when the lock can no longer be guaranteed (lease expired, renewal failed, store
    /// closed). Await `lost().cancelled_owned()`, in `select!` too (see
    /// [`Lease::lost`](crate::Lease::lost)).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// True once [`LockGuard::lost`] has fired, or its deadline ([`LockGuard::validity`]) has
    /// passed: checked against the clock, so a process that was frozen past its TTL is told at
    /// its first look, before the timer that fires `lost()` has had a chance to run (which
    /// it then fires).
    pub fn is_lost(&self) -> bool {
        if self.valid.expired() {
            self.lost.cancel();
        }
        self.lost.is_cancelled()
    }

    /// Releases the lock. Fails with [`Error::LockLost`](crate::Error::LockLost) if it was lost
    /// before: whatever was done under it may have overlapped with another holder.
    pub async fn release(mut self) -> Result<()> {
        match self.handle.take() {
            Some(mut handle) => handle.release().await,
            None => Ok(()),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(mut handle) = self.handle.take() {
            handle.release_in_background();
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key)
            .field("fencing_token", &self.fencing_token)
            .field("lost", &self.lost.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::spawn_keep_alive;
    use std::time::Duration;

    /// A holder frozen past its deadline (here: its runtime's only thread blocked, as by
    /// SIGSTOP or a stall) is told at its first look, before the timer that fires `lost()`
    /// has run.
    #[tokio::test(flavor = "current_thread")]
    async fn a_holder_frozen_past_its_deadline_is_told_at_its_first_look() {
        let ttl = Duration::from_millis(300);
        let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let sent = tokio::time::Instant::now();
        // A partition: renewals never answer; only the deadline can end the lock.
        let valid = spawn_keep_alive(
            ttl,
            sent,
            stop.clone(),
            lost.clone(),
            std::future::pending::<Result<bool>>,
        );
        let guard = LockGuard::new(
            Key::parse("job").expect("a key"),
            1,
            lost.clone(),
            Box::new(ReleaseWith::new(
                Key::parse("job").expect("a key"),
                stop,
                || async { Ok(true) },
            )),
        )
        .with_validity(valid);
        tokio::task::yield_now().await;
        assert!(!guard.is_lost(), "held while the deadline is ahead");
        std::thread::sleep(ttl * 2);
        assert!(
            guard.is_lost(),
            "frozen past the deadline: told before any timer ran"
        );
        assert!(lost.is_cancelled(), "and lost() has fired");
    }
}
