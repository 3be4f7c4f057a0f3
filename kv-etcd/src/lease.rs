//! Key leases (`Store::grant`): etcd's own leases, renewed by the shared keep-alive.

use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::{Renewed, lost_on_close, renewed_lease};
use kv_core::{Error, Lease, Result};

use crate::Inner;

/// Grants an etcd lease and keeps it alive until it is revoked, dropped or the handle closes
/// (which revokes it, with the locks' leases).
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let sent = tokio::time::Instant::now();
    let (id, granted) = inner.grant_lease(ttl).await?;
    // etcd grants whole seconds, possibly more than asked: renew within what was asked.
    let ttl = granted.min(ttl.max(Duration::from_secs(1)));
    let lease = renewing(
        inner,
        id,
        ttl,
        sent,
        crate::lock::renewer(inner.clone(), id),
    );
    inner.held.hold(id, lease.lost());
    Ok(lease)
}

/// Takes up lease `id` (hexadecimal, as [`Lease::id`] shows it): renewed once now, then in
/// the background; not revoked when this handle closes.
pub(crate) async fn attach(inner: &Arc<Inner>, id: &str) -> Result<Lease> {
    let number = i64::from_str_radix(id, 16).map_err(|_| {
        Error::invalid_argument(format!("{id:?} is not an etcd lease ID (hexadecimal)"))
    })?;
    let lost = || Error::LeaseLost { id: id.to_owned() };
    let sent = tokio::time::Instant::now();
    let mut renew = crate::lock::renewer(inner.clone(), number);
    if !renew().await? {
        return Err(lost());
    }
    let granted = inner
        .call(
            "lease time-to-live",
            inner.client().lease_time_to_live(number),
        )
        .await?
        .granted_ttl;
    let ttl = Duration::from_secs(u64::try_from(granted).map_err(|_| lost())?);
    let lease = renewing(inner, number, ttl, sent, renew);
    Ok(lost_on_close(lease, &inner.closed))
}

/// Lease `id`, renewed by `renew` from `sent` on.
fn renewing(
    inner: &Arc<Inner>,
    id: i64,
    ttl: Duration,
    sent: tokio::time::Instant,
    renew: impl FnMut() -> crate::lock::Renewal + Send + 'static,
) -> Lease {
    let revoking = inner.clone();
    renewed_lease(
        format!("{id:x}"),
        ttl,
        sent,
        &inner.closed,
        id,
        renew,
        move || {
            let inner = revoking.clone();
            async move {
                inner.held.forget(|held| *held == id);
                match inner
                    .call("lease revoke", inner.client().lease_revoke(id))
                    .await
                {
                    // Already expired or revoked: its keys are gone.
                    Err(Error::Backend(e)) if crate::lock::lease_gone(&e) => Ok(()),
                    revoked => revoked.map(drop),
                }
            }
        },
    )
}

/// The etcd lease ID of `lease`: `InvalidArgument` for another backend's lease, `LeaseLost`
/// once it has ended.
pub(crate) fn id_of(lease: &Lease) -> Result<i64> {
    Renewed::<i64>::tag_of(lease, |_| true).copied()
}
