//! Key leases (`Store::grant`): granting, background renewal, revoke.

use std::any::Any;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::LeaseOps;
use kv_core::{Error, Lease, Result};
use tokio_util::sync::CancellationToken;

use crate::namespace::Namespace;

/// A memory namespace's side of a [`Lease`].
#[derive(Debug)]
pub(crate) struct MemoryLeaseOps {
    namespace: Weak<Namespace>,
    id: u64,
    stop: CancellationToken,
}

/// Grants a lease on `namespace` to handle `owner` and starts renewing it.
pub(crate) fn grant(namespace: &Arc<Namespace>, owner: u64, ttl: Duration) -> Result<Lease> {
    let (id, lost) = namespace
        .state
        .write()
        .grant(ttl, owner, std::time::Instant::now())?;
    Ok(renewing(namespace, id, ttl, lost, CancellationToken::new()))
}

/// Takes up lease `id` (granted by any handle of `namespace`), renewed until `stop` fires.
pub(crate) fn attach(
    namespace: &Arc<Namespace>,
    id: &str,
    stop: CancellationToken,
) -> Result<Lease> {
    let lost = || Error::LeaseLost { id: id.to_owned() };
    let number: u64 = kv_core::backend::lease_number(id)?;
    let (ttl, token) = namespace
        .state
        .write()
        .attach(number, std::time::Instant::now())?
        .ok_or_else(lost)?;
    // Its own `lost`, fired with the lease's: closing this handle must not tell the granter.
    Ok(renewing(namespace, number, ttl, token.child_token(), stop))
}

/// Lease `id` of `namespace`, renewed in the background from now until `stop` fires.
fn renewing(
    namespace: &Arc<Namespace>,
    id: u64,
    ttl: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
) -> Lease {
    namespace.wake_timers();
    let weak = Arc::downgrade(namespace);
    let renewing = weak.clone();
    let now = tokio::time::Instant::now();
    let valid = kv_core::Validity::from_renewal(ttl, now);
    namespace.spawn_renewal(kv_core::backend::keep_alive(
        ttl,
        now,
        stop.clone(),
        lost.clone(),
        valid.clone(),
        move || {
            let namespace = renewing.upgrade();
            async move {
                let Some(namespace) = namespace else {
                    return Ok(false);
                };
                let renewed = namespace
                    .state
                    .write()
                    .renew_key_lease(id, std::time::Instant::now());
                namespace.wake_timers();
                renewed
            }
        },
    ));
    let ops = MemoryLeaseOps {
        namespace: weak,
        id,
        stop,
    };
    Lease::renewed(id.to_string(), ttl, lost, valid, ops)
}

/// The id of `lease` if it was granted on `namespace`; `InvalidArgument` otherwise.
pub(crate) fn own(lease: &Lease, namespace: &Arc<Namespace>) -> Result<u64> {
    lease
        .ops::<MemoryLeaseOps>()
        .filter(|ops| std::ptr::eq(ops.namespace.as_ptr(), Arc::as_ptr(namespace)))
        .map(|ops| ops.id)
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "lease {} was granted by another store; use a lease from this one",
                lease.id()
            ))
        })
}

#[async_trait]
impl LeaseOps for MemoryLeaseOps {
    async fn revoke(&self) -> Result<()> {
        self.stop.cancel();
        match self.namespace.upgrade() {
            Some(namespace) => namespace.state.write().revoke(self.id).map(drop),
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
