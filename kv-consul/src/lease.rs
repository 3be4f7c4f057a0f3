//! Key leases (`Store::grant`): a Consul session with `Behavior=delete` that the keys are
//! acquired with (the `lock` verb, no expiry in their `Flags`), renewed by the shared
//! keep-alive; destroying it deletes them.

use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::{Renewed, lost_on_close, renewed_lease};
use kv_core::{Error, Lease, Result};
use tokio::time::Instant;

use crate::Inner;
use crate::api::SessionSpec;

/// Creates the lease's session and keeps it alive until it is revoked, dropped or the handle
/// closes (which destroys it, with the locks' sessions). Consul ends an unrenewed session one
/// to two session TTLs after its last renewal; the session TTL is `max(ttl / 2,
/// session_ttl_min)`, as for TTL keys and locks, and `lost()` counts one session TTL down.
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let session_ttl = inner.session_ttl(ttl);
    let sent = Instant::now();
    let session = inner
        .api
        .create_session(&SessionSpec {
            ttl: session_ttl,
            name: "kv lease",
        })
        .await?;
    let lease = renewing(inner, session, session_ttl, sent);
    inner.held.hold(lease.id().to_owned(), lease.lost());
    Ok(lease)
}

/// Takes up the lease of session `id`: renewed once now, then in the background; not
/// destroyed when this handle closes.
pub(crate) async fn attach(inner: &Arc<Inner>, id: &str) -> Result<Lease> {
    // A session ID is a UUID; anything else must not reach the request path.
    let uuid = id.len() == 36
        && id.char_indices().all(|(at, c)| match at {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !uuid {
        return Err(Error::invalid_argument(format!(
            "{id:?} is not a Consul session ID (a UUID)"
        )));
    }
    let sent = Instant::now();
    let session_ttl = inner
        .api
        .renew_session_ttl(id)
        .await?
        .ok_or_else(|| Error::LeaseLost { id: id.to_owned() })?;
    let lease = renewing(inner, id.to_owned(), session_ttl, sent);
    Ok(lost_on_close(lease, &inner.closed))
}

/// The lease of `session`, renewed from `sent` on.
fn renewing(inner: &Arc<Inner>, session: String, session_ttl: Duration, sent: Instant) -> Lease {
    let (renewing, revoking, id) = (inner.clone(), inner.clone(), session.clone());
    renewed_lease(
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
    )
}

/// The session of `lease`: `InvalidArgument` for another backend's lease, `LeaseLost` once it
/// has ended.
pub(crate) fn session_of(lease: &Lease) -> Result<&str> {
    Renewed::<String>::tag_of(lease, |_| true).map(String::as_str)
}
