//! Key leases (`Store::grant`): a Consul session with `Behavior=delete` that the keys are
//! acquired with (the `lock` verb, no expiry in their `Flags`), renewed by the shared
//! keep-alive; destroying it deletes them.

use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::{Renewed, renewed_lease};
use kv_core::{Lease, Result};

use crate::Inner;
use crate::api::SessionSpec;

/// Creates the lease's session and keeps it alive until it is revoked, dropped or the handle
/// closes (which destroys it, with the locks' sessions). Consul ends an unrenewed session one
/// to two session TTLs after its last renewal; the session TTL is `max(ttl / 2,
/// session_ttl_min)`, as for TTL keys and locks, and `lost()` counts one session TTL down.
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let session_ttl = inner.session_ttl(ttl);
    let sent = tokio::time::Instant::now();
    let session = inner
        .api
        .create_session(&SessionSpec {
            ttl: session_ttl,
            name: "kv lease",
        })
        .await?;
    let (renewing, revoking, id) = (inner.clone(), inner.clone(), session.clone());
    let lease = renewed_lease(
        session.clone(),
        session_ttl,
        sent,
        &inner.closed,
        session.clone(),
        move || {
            let (inner, id) = (renewing.clone(), id.clone());
            async move { inner.api.renew_session(&id).await }
        },
        move || {
            let (inner, id) = (revoking.clone(), session.clone());
            async move {
                inner.forget(&id);
                inner.api.destroy_session(&id).await
            }
        },
    );
    inner
        .held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(lease.id().to_owned(), lease.lost());
    Ok(lease)
}

/// The session of `lease`: `InvalidArgument` for another backend's lease, `LeaseLost` once it
/// has ended.
pub(crate) fn session_of(lease: &Lease) -> Result<&str> {
    Renewed::<String>::tag_of(lease, |_| true).map(String::as_str)
}
