//! Key leases (`Store::grant`): a Consul session with `Behavior=delete` that the keys are
//! acquired with (the `lock` verb, no expiry in their `Flags`), renewed by the shared
//! keep-alive; destroying it deletes them.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kv_core::CancellationToken;
use kv_core::backend::LeaseOps;
use kv_core::{Error, Lease, Result};
use tokio::time::Instant;

use crate::Inner;
use crate::api::SessionSpec;

/// A Consul session's side of a [`Lease`].
pub(crate) struct ConsulLeaseOps {
    inner: Arc<Inner>,
    session: String,
    stop: CancellationToken,
    lost: CancellationToken,
}

impl std::fmt::Debug for ConsulLeaseOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulLeaseOps")
            .field("session", &self.session)
            .finish()
    }
}

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
    let lost = CancellationToken::new();
    let stop = inner.closed.child_token();
    inner
        .held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(session.clone(), lost.clone());
    tokio::spawn(crate::lock::keep_alive(
        inner.clone(),
        session.clone(),
        session_ttl,
        sent.into_std(),
        stop.clone(),
        lost.clone(),
    ));
    let ops = ConsulLeaseOps {
        inner: inner.clone(),
        session: session.clone(),
        stop,
        lost: lost.clone(),
    };
    Ok(Lease::new(session, ttl, lost, ops))
}

/// The session of `lease`: `InvalidArgument` for another backend's lease, `LeaseLost` once it
/// has ended.
pub(crate) fn session_of(lease: &Lease) -> Result<&str> {
    let ops = lease.ops::<ConsulLeaseOps>().ok_or_else(|| {
        Error::invalid_argument(format!(
            "lease {} was not granted by a Consul store; use a lease from this one",
            lease.id()
        ))
    })?;
    if lease.is_lost() {
        return Err(Error::LeaseLost {
            id: lease.id().to_owned(),
        });
    }
    Ok(&ops.session)
}

#[async_trait]
impl LeaseOps for ConsulLeaseOps {
    async fn revoke(&self) -> Result<()> {
        self.stop.cancel();
        let destroyed = self.inner.api.destroy_session(&self.session).await;
        self.lost.cancel();
        self.inner
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.session);
        destroyed
    }

    fn stop(&self) {
        self.stop.cancel();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
