//! Key leases (`Store::grant`): a lease record in Redis whose expiry each renewal moves, with
//! the expiry of every key bound to it (`scripts::LEASE`), renewed by the shared keep-alive.

use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::{Renewed, lost_on_close, renewed_lease, upgraded};
use kv_core::{Error, Lease, Result};

use crate::{Inner, scripts};

/// Renews (or revokes) lease `id`: true if it was still alive.
async fn call(inner: &Inner, id: u64, action: &'static str) -> Result<bool> {
    Ok(ttl_ms(inner, id, action).await? > 0)
}

/// Renews (or revokes) lease `id`: its TTL in ms if it was still alive (renewed), else 0.
async fn ttl_ms(inner: &Inner, id: u64, action: &'static str) -> Result<u64> {
    let mut invocation = inner.writing(&scripts::LEASE);
    invocation.arg(id).arg(action);
    inner.invoke(action, invocation).await
}

/// Grants a lease and keeps it alive until it is revoked, dropped or the handle closes.
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let sent = tokio::time::Instant::now();
    let mut invocation = inner.writing(&scripts::GRANT);
    invocation.arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let id: u64 = inner.invoke("grant", invocation).await?;
    let lease = renewing(inner, id, ttl, sent);
    inner.leases.hold(id, lease.lost());
    Ok(lease)
}

/// Takes up lease `id` of this namespace: renewed once now, then in the background; not
/// revoked when this handle closes.
pub(crate) async fn attach(inner: &Arc<Inner>, id: &str) -> Result<Lease> {
    let number: u64 = kv_core::backend::lease_number(id)?;
    let sent = tokio::time::Instant::now();
    match ttl_ms(inner, number, "renew").await? {
        0 => Err(Error::LeaseLost { id: id.to_owned() }),
        ms => Ok(lost_on_close(
            renewing(inner, number, Duration::from_millis(ms), sent),
            &inner.closed,
        )),
    }
}

/// Lease `id`, renewed from `sent` on.
fn renewing(inner: &Arc<Inner>, id: u64, ttl: Duration, sent: tokio::time::Instant) -> Lease {
    renewed_lease(
        id.to_string(),
        ttl,
        sent,
        &inner.closed,
        (inner.prefix.clone(), id),
        upgraded(Arc::downgrade(inner), false, move |inner| async move {
            call(&inner, id, "renew").await
        }),
        upgraded(Arc::downgrade(inner), (), move |inner| async move {
            revoke(&inner, id).await
        }),
    )
}

/// The id of `lease` if it was granted in this namespace; `InvalidArgument` otherwise,
/// `LeaseLost` once it has ended.
pub(crate) fn id_of(lease: &Lease, inner: &Inner) -> Result<u64> {
    Renewed::<(String, u64)>::tag_of(lease, |(prefix, _)| *prefix == inner.prefix).map(|t| t.1)
}

/// The error of a put with a lease that has ended.
pub(crate) fn lost(lease: &Lease) -> Error {
    Error::LeaseLost {
        id: lease.id().to_owned(),
    }
}

/// Revokes a lease: its keys go at once (Delete records).
pub(crate) async fn revoke(inner: &Inner, id: u64) -> Result<()> {
    inner.leases.forget(|held| *held == id);
    call(inner, id, "revoke").await.map(drop)
}
