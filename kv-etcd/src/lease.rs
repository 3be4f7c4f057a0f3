//! Key leases (`Store::grant`): etcd's own leases, renewed by the shared keep-alive.

use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::{Renewed, renewed_lease};
use kv_core::{Error, Lease, Result};

use crate::Inner;

/// Grants an etcd lease and keeps it alive until it is revoked, dropped or the handle closes
/// (which revokes it, with the locks' leases).
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let sent = tokio::time::Instant::now();
    let (id, granted) = inner.grant_lease(ttl).await?;
    // etcd grants whole seconds, possibly more than asked: renew within what was asked.
    let ttl = granted.min(ttl.max(Duration::from_secs(1)));
    let revoking = inner.clone();
    let lease = renewed_lease(
        format!("{id:x}"),
        ttl,
        sent,
        &inner.closed,
        id,
        crate::lock::renewer(inner.clone(), id),
        move || {
            let inner = revoking.clone();
            async move {
                inner
                    .held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(held, _)| *held != id);
                match inner
                    .call("lease revoke", inner.client().lease_client().revoke(id))
                    .await
                {
                    // Already expired or revoked: its keys are gone.
                    Err(Error::Backend(e)) if e.to_string().contains("lease not found") => Ok(()),
                    revoked => revoked.map(drop),
                }
            }
        },
    );
    inner
        .held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, lease.lost()));
    Ok(lease)
}

/// The etcd lease ID of `lease`: `InvalidArgument` for another backend's lease, `LeaseLost`
/// once it has ended.
pub(crate) fn id_of(lease: &Lease) -> Result<i64> {
    Renewed::<i64>::tag_of(lease, |_| true).copied()
}
