//! Locks: a lock key attached to a lease, taken by one transaction that checks every lock that
//! could conflict; the lease is kept alive until release, and `lost()` fires when it cannot be.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::pb::etcdserverpb::{
    Compare, WatchCreateRequest, compare::CompareResult, request_op,
};
use crate::client::pb::mvccpb::event::EventType;
use async_trait::async_trait;
use kv_core::backend::LeasedLock;
use kv_core::{Error, Key, Lock, LockGuard, LockHolder, LockOptions, Result};

use crate::client;
use crate::{Inner, revision_in, revision_of};

/// A lock on a key or subtree of an etcd store.
pub(crate) struct EtcdLock {
    pub inner: Arc<Inner>,
    pub key: Key,
    pub subtree: bool,
    pub options: LockOptions,
}

impl fmt::Debug for EtcdLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdLock")
            .field("key", &self.key)
            .field("subtree", &self.subtree)
            .finish()
    }
}

impl EtcdLock {
    fn lock_key(&self) -> String {
        self.inner.layout.lock_key(self.subtree, self.key.as_str())
    }

    /// Every lock that excludes this one must be absent: both scopes on the key, subtree locks
    /// on its ancestors, and for a subtree lock every lock below it.
    fn conditions(&self) -> Vec<Compare> {
        let layout = &self.inner.layout;
        let absent = |key: String| client::create_revision(key, CompareResult::Equal, 0);
        let key = self.key.as_str();
        let mut conditions = vec![
            absent(layout.lock_key(false, key)),
            absent(layout.lock_key(true, key)),
        ];
        let mut ancestor = self.key.parent();
        while let Some(parent) = ancestor {
            conditions.push(absent(layout.lock_key(true, parent.as_str())));
            ancestor = parent.parent();
        }
        if self.subtree {
            for scope in [false, true] {
                let below = layout.locks_below(scope, key);
                conditions.push(Compare {
                    range_end: below.end,
                    ..client::create_revision(below.start, CompareResult::Equal, 0)
                });
            }
        }
        conditions
    }

    /// One attempt: the guard, or the revision at which the lock was found taken.
    async fn attempt(&self, lease: &Lease) -> Result<std::result::Result<LockGuard, i64>> {
        let Lease {
            id: lease,
            ttl,
            sent,
        } = *lease;
        let txn = client::txn(
            self.conditions(),
            [request_op::Request::RequestPut(client::put(
                self.lock_key(),
                self.options.value.to_vec(),
                lease,
            ))],
            [],
        );
        let response = self
            .inner
            .call("lock", self.inner.client().txn(txn))
            .await?;
        if !response.succeeded {
            return Ok(Err(revision_in(response.header.as_ref())));
        }
        let token = revision_of(response.header.as_ref())?;
        // Planted bug (self-test only): trust a lease that waited as if granted just now.
        let sent = if kv_core::failpoint::armed("lock-skip-lease-recheck") {
            Instant::now()
        } else {
            sent
        };
        let leased = LeasedLock {
            key: &self.key,
            fencing_token: token,
            closed: &self.inner.closed,
            held: (&self.inner.held, lease),
            ttl,
            renewed_sent: sent.into(),
        };
        let (inner, lock_key) = (self.inner.clone(), self.lock_key());
        let (guard, _) = leased.guard(renewer(self.inner.clone(), lease), move || {
            release(inner.clone(), lock_key.clone(), lease, token)
        });
        Ok(Ok(guard))
    }

    /// A fresh lease for an attempt, with when its grant was sent.
    async fn grant(&self) -> Result<Lease> {
        let sent = Instant::now();
        let (id, granted) = self.inner.grant_lease(self.options.ttl).await?;
        Ok(Lease {
            id,
            // The lease etcd granted: whole seconds, which may be less than asked for.
            ttl: granted.min(self.options.ttl.max(Duration::from_secs(1))),
            sent,
        })
    }

    /// Revokes a lease this lock no longer needs, without waiting (it expires anyway).
    fn revoke_in_background(&self, lease: i64) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _ = inner
                .call("lease revoke", inner.client().lease_revoke(lease))
                .await;
        });
    }

    /// Waits until some lock of this store is released after `revision` (or a second passes).
    async fn wait_for_release(&self, revision: i64) -> Result<()> {
        let all = self.inner.layout.all_locks();
        let create = WatchCreateRequest {
            key: all.start,
            range_end: all.end,
            start_revision: revision + 1,
            ..WatchCreateRequest::default()
        };
        let mut stream = self
            .inner
            .call("lock wait", self.inner.client().watch(create))
            .await?;
        let released = async {
            while let Ok(Some(response)) = stream.message().await {
                if response.canceled
                    || response
                        .events
                        .iter()
                        .any(|e| e.r#type() == EventType::Delete)
                {
                    return;
                }
            }
        };
        tokio::select! {
            _ = released => Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => Ok(()),
            _ = self.inner.closed.cancelled() => Err(Error::Closed),
        }
    }
}

#[async_trait]
impl Lock for EtcdLock {
    fn key(&self) -> &Key {
        &self.key
    }

    async fn acquire(&self) -> Result<LockGuard> {
        self.inner.closed.check_open()?;
        let mut lease = self.grant().await?;
        loop {
            self.inner.closed.check_open()?;
            // A waiter may wait longer than its TTL: a lease that has used up a third of its
            // life is replaced before the next attempt, so the lock is never taken with a
            // lease about to expire (or already gone).
            if lease.sent.elapsed() >= lease.ttl / 3
                && !kv_core::failpoint::armed("lock-skip-lease-recheck")
            {
                self.revoke_in_background(lease.id);
                lease = self.grant().await?;
            }
            match self.attempt(&lease).await {
                Ok(Ok(guard)) => return Ok(guard),
                Ok(Err(revision)) => {
                    if let Err(e) = self.wait_for_release(revision).await {
                        self.revoke_in_background(lease.id);
                        return Err(e);
                    }
                }
                Err(e) => {
                    self.revoke_in_background(lease.id);
                    return Err(e);
                }
            }
        }
    }

    async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        self.inner.closed.check_open()?;
        let lease = self.grant().await?;
        match self.attempt(&lease).await {
            Ok(Ok(guard)) => Ok(Some(guard)),
            Ok(Err(_)) => {
                self.revoke_in_background(lease.id);
                Ok(None)
            }
            Err(e) => {
                self.revoke_in_background(lease.id);
                Err(e)
            }
        }
    }

    async fn holder(&self) -> Result<Option<LockHolder>> {
        self.inner.closed.check_open()?;
        let response = self
            .inner
            .read("lock holder", |client| {
                let request = client::get(self.lock_key());
                async move { client.range(request).await }
            })
            .await?;
        Ok(response.kvs.into_iter().next().map(|kv| LockHolder {
            value: bytes::Bytes::from(kv.value),
            fencing_token: u64::try_from(kv.create_revision).unwrap_or(0),
        }))
    }
}

/// One renewal per call (`Ok(false)`: the lease is gone), as [`renewer`] makes them.
pub(crate) type Renewal = std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool>> + Send>>;

/// True if etcd's message says it no longer has the lease (revoked or expired).
pub(crate) fn lease_gone(error: &impl std::fmt::Display) -> bool {
    error.to_string().contains("lease not found")
}

/// One renewal of `lease` per call, on a keep-alive stream opened at the first call and
/// reopened after a failure: `Ok(false)` once etcd says the lease is gone.
pub(crate) fn renewer(inner: Arc<Inner>, lease: i64) -> impl FnMut() -> Renewal + Send + 'static {
    let channel = Arc::new(tokio::sync::Mutex::new(None));
    move || {
        let (inner, channel) = (inner.clone(), channel.clone());
        Box::pin(async move {
            let mut channel = channel.lock().await;
            let renewal = async {
                if channel.is_none() {
                    *channel = Some(inner.client().lease_keep_alive(lease).await?);
                }
                channel.as_mut().expect("set above").renew().await
            };
            match tokio::time::timeout(inner.timeout, renewal).await {
                Ok(Ok(Some(response))) => Ok(response.ttl > 0),
                // The server no longer has the lease (revoked, expired): lost at once.
                Ok(Err(e)) if lease_gone(&e) => {
                    *channel = None;
                    Ok(false)
                }
                failed => {
                    *channel = None;
                    Err(match failed {
                        Ok(Err(e)) => Error::unavailable(format!("lease keep-alive: {e}"), None),
                        _ => Error::unavailable("lease keep-alive ended", None),
                    })
                }
            }
        })
    }
}

/// A lease for one lock attempt: its id, the TTL etcd granted, and when the grant was sent.
#[derive(Debug, Clone, Copy)]
struct Lease {
    id: i64,
    ttl: Duration,
    sent: Instant,
}

/// Deletes the lock key if `token` still holds it, and revokes the lease; returns whether it
/// still held it.
async fn release(inner: Arc<Inner>, lock_key: String, lease: i64, token: u64) -> Result<bool> {
    let txn = client::txn(
        vec![client::create_revision(
            lock_key.clone(),
            CompareResult::Equal,
            i64::try_from(token).unwrap_or(0),
        )],
        [request_op::Request::RequestDeleteRange(client::delete(
            lock_key, None,
        ))],
        [],
    );
    let released = inner
        .call("unlock", inner.client().txn(txn))
        .await?
        .succeeded;
    let _ = inner
        .call("lease revoke", inner.client().lease_revoke(lease))
        .await;
    inner.held.forget(|l| *l == lease);
    Ok(released)
}
