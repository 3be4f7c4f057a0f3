//! Key leases (`Store::grant`): a `kv_leases` row whose expiry each renewal moves, with the
//! expiry of every key bound to it (`kv_data.lease`), renewed by the shared keep-alive.

use std::any::Any;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::LeaseOps;
use kv_core::{CancellationToken, Error, Lease, Result};

use crate::Inner;

/// A SQLite lease's side of a [`Lease`].
pub(crate) struct SqliteLeaseOps {
    inner: Weak<Inner>,
    /// The database file, to tell leases of other stores apart.
    path: std::path::PathBuf,
    id: i64,
    stop: CancellationToken,
    lost: CancellationToken,
}

impl std::fmt::Debug for SqliteLeaseOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLeaseOps")
            .field("id", &self.id)
            .finish()
    }
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Grants a lease and keeps it alive until it is revoked, dropped or the handle closes.
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let sent = tokio::time::Instant::now();
    let ttl_ms = millis(ttl);
    let id = inner.db.write("grant", move |w| w.grant(ttl_ms)).await?;
    let lost = CancellationToken::new();
    let stop = inner.closed.child_token();
    inner
        .leases
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, lost.clone()));
    let weak = Arc::downgrade(inner);
    tokio::spawn(kv_core::backend::keep_alive(
        ttl,
        sent,
        stop.clone(),
        lost.clone(),
        move || {
            let inner = weak.upgrade();
            async move {
                match inner {
                    Some(inner) => inner.db.write("renew a lease", move |w| w.renew(id)).await,
                    None => Ok(false),
                }
            }
        },
    ));
    let ops = SqliteLeaseOps {
        inner: Arc::downgrade(inner),
        path: inner.db.settings.path.clone(),
        id,
        stop,
        lost: lost.clone(),
    };
    Ok(Lease::new(id.to_string(), ttl, lost, ops))
}

/// The id of `lease` if it was granted on this database; `InvalidArgument` otherwise,
/// `LeaseLost` once it has ended.
pub(crate) fn id_of(lease: &Lease, inner: &Inner) -> Result<i64> {
    let ops = lease
        .ops::<SqliteLeaseOps>()
        .filter(|ops| ops.path == inner.db.settings.path)
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "lease {} was granted by another store; use a lease from this one",
                lease.id()
            ))
        })?;
    if lease.is_lost() {
        return Err(lost(lease));
    }
    Ok(ops.id)
}

/// The error of a put with a lease that has ended.
pub(crate) fn lost(lease: &Lease) -> Error {
    Error::LeaseLost {
        id: lease.id().to_owned(),
    }
}

/// Revokes a lease: its keys go at once (Delete records) and `lost` fires.
pub(crate) async fn revoke(inner: &Arc<Inner>, id: i64, lost: &CancellationToken) -> Result<()> {
    let revoked = inner
        .db
        .write("revoke a lease", move |w| w.revoke(id))
        .await;
    lost.cancel();
    inner.signal();
    inner
        .leases
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(held, _)| *held != id);
    revoked.map(drop)
}

#[async_trait]
impl LeaseOps for SqliteLeaseOps {
    async fn revoke(&self) -> Result<()> {
        self.stop.cancel();
        match self.inner.upgrade() {
            Some(inner) => revoke(&inner, self.id, &self.lost).await,
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
