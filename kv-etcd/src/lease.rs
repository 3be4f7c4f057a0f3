//! Key leases (`Store::grant`): etcd's own leases, renewed by the shared keep-alive.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::LeaseOps;
use kv_core::{Error, Lease, Result};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Inner;

/// An etcd lease's side of a [`Lease`].
pub(crate) struct EtcdLeaseOps {
    inner: Arc<Inner>,
    id: i64,
    stop: CancellationToken,
    lost: CancellationToken,
}

impl std::fmt::Debug for EtcdLeaseOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLeaseOps")
            .field("id", &self.id)
            .finish()
    }
}

/// Grants an etcd lease and keeps it alive until it is revoked, dropped or the handle closes
/// (which revokes it, with the locks' leases).
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let sent = Instant::now();
    let (id, granted) = inner.grant_lease(ttl).await?;
    // etcd grants whole seconds, possibly more than asked: renew within what was asked.
    let ttl = granted.min(ttl.max(Duration::from_secs(1)));
    let lost = CancellationToken::new();
    let stop = inner.closed.child_token();
    inner
        .held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, lost.clone()));
    tokio::spawn(crate::lock::keep_alive(
        inner.clone(),
        id,
        ttl,
        sent.into_std(),
        stop.clone(),
        lost.clone(),
    ));
    let ops = EtcdLeaseOps {
        inner: inner.clone(),
        id,
        stop,
        lost: lost.clone(),
    };
    Ok(Lease::new(format!("{id:x}"), ttl, lost, ops))
}

/// The etcd lease ID of `lease`: `InvalidArgument` for another backend's lease, `LeaseLost`
/// once it has ended.
pub(crate) fn id_of(lease: &Lease) -> Result<i64> {
    let ops = lease.ops::<EtcdLeaseOps>().ok_or_else(|| {
        Error::invalid_argument(format!(
            "lease {} was not granted by an etcd store; use a lease from this one",
            lease.id()
        ))
    })?;
    if lease.is_lost() {
        return Err(Error::LeaseLost {
            id: lease.id().to_owned(),
        });
    }
    Ok(ops.id)
}

#[async_trait]
impl LeaseOps for EtcdLeaseOps {
    async fn revoke(&self) -> Result<()> {
        self.stop.cancel();
        let inner = &self.inner;
        let revoked = inner
            .call(
                "lease revoke",
                inner.client().lease_client().revoke(self.id),
            )
            .await;
        self.lost.cancel();
        inner
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, _)| *id != self.id);
        match revoked {
            Ok(_) => Ok(()),
            // Already expired or revoked: its keys are gone.
            Err(Error::Backend(e)) if e.to_string().contains("lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn stop(&self) {
        self.stop.cancel();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
