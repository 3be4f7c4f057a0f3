//! Locks: waiting, granting, background renewal and release.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Instant;

use async_trait::async_trait;
use kv_core::backend::LeaseHandle;
use kv_core::{Error, Key, Lock, LockGuard, LockHolder, LockOptions, Result};
use tokio_util::sync::CancellationToken;

use crate::namespace::Namespace;
use crate::state::LockRequest;

/// A lock on a memory namespace.
pub(crate) struct MemoryLock {
    pub namespace: Arc<Namespace>,
    pub key: Key,
    pub options: LockOptions,
    /// The handle that creates guards (its id, and its token that fires on close).
    pub owner: u64,
    pub closed: CancellationToken,
}

impl fmt::Debug for MemoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLock")
            .field("key", &self.key)
            .field("scope", &self.options.scope)
            .field("ttl", &self.options.ttl)
            .finish()
    }
}

impl MemoryLock {
    fn try_now(&self) -> Result<Option<LockGuard>> {
        if self.closed.is_cancelled() {
            return Err(Error::Closed);
        }
        let request = LockRequest {
            key: &self.key,
            scope: self.options.scope,
            ttl: self.options.ttl,
            value: &self.options.value,
            owner: self.owner,
        };
        let Some(grant) = self
            .namespace
            .state
            .write()
            .try_lock(&request, Instant::now())?
        else {
            return Ok(None);
        };
        self.namespace.wake_timers();
        let stop_renewal = CancellationToken::new();
        self.namespace.spawn_renewal(renew(
            Arc::downgrade(&self.namespace),
            grant.lease,
            self.options.ttl / 3,
            stop_renewal.clone(),
            grant.lost.clone(),
        ));
        let lease = MemoryLease {
            namespace: self.namespace.clone(),
            key: self.key.clone(),
            lease: grant.lease,
            stop_renewal,
        };
        Ok(Some(LockGuard::new(
            self.key.clone(),
            grant.token,
            grant.lost,
            Box::new(lease),
        )))
    }
}

#[async_trait]
impl Lock for MemoryLock {
    fn key(&self) -> &Key {
        &self.key
    }

    async fn acquire(&self) -> Result<LockGuard> {
        loop {
            // Register for the wake-up before trying, so a release in between is not missed.
            let freed = self.namespace.lock_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(guard) = self.try_now()? {
                return Ok(guard);
            }
            tokio::select! {
                _ = freed => {}
                _ = self.closed.cancelled() => return Err(Error::Closed),
            }
        }
    }

    async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        self.try_now()
    }

    async fn holder(&self) -> Result<Option<LockHolder>> {
        if self.closed.is_cancelled() {
            return Err(Error::Closed);
        }
        Ok(self
            .namespace
            .state
            .read()
            .holder(self.key.as_str(), Instant::now()))
    }
}

/// Renews the lease every `period` until stopped; fires `lost` if renewal fails.
async fn renew(
    namespace: Weak<Namespace>,
    lease: u64,
    period: std::time::Duration,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let renewed = namespace.upgrade().is_some_and(|ns| {
            let renewed = ns.state.write().renew(lease, Instant::now());
            if renewed {
                ns.wake_timers();
            } else {
                ns.lock_freed.notify_waiters();
            }
            renewed
        });
        if !renewed {
            lost.cancel();
            return;
        }
    }
}

/// The guard's side of a held memory lock.
struct MemoryLease {
    namespace: Arc<Namespace>,
    key: Key,
    lease: u64,
    stop_renewal: CancellationToken,
}

impl MemoryLease {
    fn release_now(&mut self) -> bool {
        self.stop_renewal.cancel();
        let released = self.namespace.state.write().release(self.lease).is_some();
        if released {
            self.namespace.lock_freed.notify_waiters();
        }
        released
    }
}

#[async_trait]
impl LeaseHandle for MemoryLease {
    async fn release(&mut self) -> Result<()> {
        if self.release_now() {
            Ok(())
        } else {
            Err(Error::LockLost {
                key: self.key.to_string(),
            })
        }
    }

    fn release_in_background(&mut self) {
        self.release_now();
    }
}
