//! Key leases (`Store::grant`): a `kv_leases` row whose expiry each renewal moves, with the
//! expiry of every key bound to it (`kv_data.lease`), renewed by the shared keep-alive.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::{Renewed, lost_on_close, renewed_lease, upgraded};
use kv_core::{Error, Lease, Result};

use crate::Inner;

/// Grants a lease and keeps it alive until it is revoked, dropped or the handle closes.
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let sent = tokio::time::Instant::now();
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let id = inner.db.write("grant", move |w| w.grant(ttl_ms)).await?;
    let lease = renewing(inner, id, ttl, sent);
    inner.leases.hold(id, lease.lost());
    Ok(lease)
}

/// Takes up lease `id` of this database (granted by any process): renewed once now, then in
/// the background; not revoked when this handle closes.
pub(crate) async fn attach(inner: &Arc<Inner>, id: &str) -> Result<Lease> {
    let number: i64 = kv_core::backend::lease_number(id)?;
    let sent = tokio::time::Instant::now();
    let ttl_ms = inner
        .db
        .write("attach a lease", move |w| w.attach(number))
        .await?
        .ok_or_else(|| Error::LeaseLost { id: id.to_owned() })?;
    let ttl = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0));
    Ok(lost_on_close(
        renewing(inner, number, ttl, sent),
        &inner.closed,
    ))
}

/// Lease `id`, renewed from `sent` on.
fn renewing(inner: &Arc<Inner>, id: i64, ttl: Duration, sent: tokio::time::Instant) -> Lease {
    renewed_lease(
        id.to_string(),
        ttl,
        sent,
        &inner.closed,
        // The database file tells leases of other stores apart.
        (inner.db.settings.path.clone(), id),
        upgraded(Arc::downgrade(inner), false, move |inner| async move {
            inner.db.write("renew a lease", move |w| w.renew(id)).await
        }),
        upgraded(Arc::downgrade(inner), (), move |inner| async move {
            revoke(&inner, id).await
        }),
    )
}

/// The id of `lease` if it was granted on this database; `InvalidArgument` otherwise,
/// `LeaseLost` once it has ended.
pub(crate) fn id_of(lease: &Lease, inner: &Inner) -> Result<i64> {
    Renewed::<(PathBuf, i64)>::tag_of(lease, |(path, _)| *path == inner.db.settings.path)
        .map(|t| t.1)
}

/// The error of a put with a lease that has ended.
pub(crate) fn lost(lease: &Lease) -> Error {
    Error::LeaseLost {
        id: lease.id().to_owned(),
    }
}

/// Revokes a lease: its keys go at once (Delete records).
pub(crate) async fn revoke(inner: &Arc<Inner>, id: i64) -> Result<()> {
    inner.leases.forget(|held| *held == id);
    let revoked = inner
        .db
        .write("revoke a lease", move |w| w.revoke(id))
        .await;
    inner.signal();
    revoked.map(drop)
}
