//! Key leases (`Store::grant`): a lease record in Redis whose expiry each renewal moves, with
//! the expiry of every key bound to it (`scripts::LEASE`), renewed by the shared keep-alive.

use std::any::Any;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::LeaseOps;
use kv_core::{CancellationToken, Error, Lease, Result};

use crate::{Inner, scripts};

/// A Redis lease's side of a [`Lease`].
pub(crate) struct RedisLeaseOps {
    inner: Weak<Inner>,
    /// The namespace's key prefix, to tell leases of other stores apart.
    prefix: String,
    id: u64,
    stop: CancellationToken,
    lost: CancellationToken,
}

impl std::fmt::Debug for RedisLeaseOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeaseOps")
            .field("id", &self.id)
            .finish()
    }
}

/// Renews (or revokes) lease `id`: true if it was still alive.
async fn call(inner: &Inner, id: u64, action: &'static str) -> Result<bool> {
    let mut invocation = inner.writing(&scripts::LEASE);
    invocation.arg(id).arg(action);
    let alive: i64 = inner.invoke(action, invocation).await?;
    Ok(alive == 1)
}

/// Grants a lease and keeps it alive until it is revoked, dropped or the handle closes.
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let sent = tokio::time::Instant::now();
    let mut invocation = inner.writing(&scripts::GRANT);
    invocation.arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let id: u64 = inner.invoke("grant", invocation).await?;
    let lost = CancellationToken::new();
    let stop = inner.closed.child_token();
    inner
        .leases
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, lost.clone()));
    let weak = Arc::downgrade(inner);
    tokio::spawn(kv_core::backend::keep_alive(
        ttl,
        sent,
        stop.clone(),
        lost.clone(),
        move || {
            let inner = weak.upgrade();
            async move {
                match inner {
                    Some(inner) => call(&inner, id, "renew").await,
                    None => Ok(false),
                }
            }
        },
    ));
    let ops = RedisLeaseOps {
        inner: Arc::downgrade(inner),
        prefix: inner.prefix.clone(),
        id,
        stop,
        lost: lost.clone(),
    };
    Ok(Lease::new(id.to_string(), ttl, lost, ops))
}

/// The id of `lease` if it was granted in this namespace; `InvalidArgument` otherwise,
/// `LeaseLost` once it has ended.
pub(crate) fn id_of(lease: &Lease, inner: &Inner) -> Result<u64> {
    let ops = lease
        .ops::<RedisLeaseOps>()
        .filter(|ops| ops.prefix == inner.prefix)
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "lease {} was granted by another store; use a lease from this one",
                lease.id()
            ))
        })?;
    if lease.is_lost() {
        return Err(lost(lease));
    }
    Ok(ops.id)
}

/// The error of a put with a lease that has ended.
pub(crate) fn lost(lease: &Lease) -> Error {
    Error::LeaseLost {
        id: lease.id().to_owned(),
    }
}

/// Revokes a lease: its keys go at once (Delete records) and `lost` fires.
pub(crate) async fn revoke(inner: &Inner, id: u64, lost: &CancellationToken) -> Result<()> {
    let revoked = call(inner, id, "revoke").await;
    lost.cancel();
    inner
        .leases
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(held, _)| *held != id);
    revoked.map(drop)
}

#[async_trait]
impl LeaseOps for RedisLeaseOps {
    async fn revoke(&self) -> Result<()> {
        self.stop.cancel();
        match self.inner.upgrade() {
            Some(inner) => revoke(&inner, self.id, &self.lost).await,
            None => Ok(()),
        }
    }

    fn stop(&self) {
        self.stop.cancel();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
