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
    namespace.wake_timers();
    let stop = CancellationToken::new();
    let weak = Arc::downgrade(namespace);
    let renewing = weak.clone();
    namespace.spawn_renewal(kv_core::backend::keep_alive(
        ttl,
        tokio::time::Instant::now(),
        stop.clone(),
        lost.clone(),
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
    Ok(Lease::new(id.to_string(), ttl, lost, ops))
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
