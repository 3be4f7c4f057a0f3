//! Leases shared by keys ([`Store::grant`](crate::Store::grant)): "these keys live while my
//! process lives".

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::lease::Validity;

/// The backend's side of a granted [`Lease`].
#[async_trait]
pub trait LeaseOps: Send + Sync + fmt::Debug + 'static {
    /// Deletes every key put with the lease at once (Delete events) and ends it; renewal
    /// stops and `lost` fires. `Ok` only once the keys are gone: a call cut off from the
    /// server is an error whose outcome is unknown (the keys then go within the TTL).
    /// Revoking a lease that is already gone is not an error.
    async fn revoke(&self) -> Result<()>;

    /// Stops renewing without revoking (every [`Lease`] clone was dropped): the keys go when
    /// the lease's TTL runs out.
    fn stop(&self);

    /// The backend's own type, for [`Lease::ops`].
    fn as_any(&self) -> &dyn Any;
}

struct Granted {
    id: String,
    ttl: Duration,
    lost: CancellationToken,
    valid: Validity,
    ops: Box<dyn LeaseOps>,
}

impl Drop for Granted {
    fn drop(&mut self) {
        self.ops.stop();
    }
}

/// A lease from [`Store::grant`](crate::Store::grant), kept alive in the background by the
/// handle that granted it. Keys put with [`PutOptions::lease`](crate::PutOptions::lease) live
/// as long as it does: [`Lease::revoke`] deletes them at once; if the lease cannot be renewed
/// ([`Lease::lost`] fires first) or every clone is dropped, they go once its TTL runs out, each
/// with a Delete event. Closing the granting handle revokes its leases.
///
/// Cheap to clone; clones are the same lease.
#[derive(Clone)]
pub struct Lease {
    granted: Arc<Granted>,
}

impl Lease {
    /// For backends: a granted lease named `id`, whose `lost` the backend fires when it ends.
    pub fn new(id: String, ttl: Duration, lost: CancellationToken, ops: impl LeaseOps) -> Lease {
        Lease::renewed(id, ttl, lost, Validity::new(), ops)
    }

    /// For backends: [`Lease::new`] for a lease renewed on a timer, whose deadline `valid`
    /// follows ([`crate::backend::keep_alive`] keeps it).
    pub fn renewed(
        id: String,
        ttl: Duration,
        lost: CancellationToken,
        valid: Validity,
        ops: impl LeaseOps,
    ) -> Lease {
        Lease {
            granted: Arc::new(Granted {
                id,
                ttl,
                lost,
                valid,
                ops: Box::new(ops),
            }),
        }
    }

    /// Until when the lease is guaranteed, as far as this process knows (the deadline
    /// [`Lease::lost`] fires at unless renewed; unknown for leases not renewed on a timer).
    pub fn validity(&self) -> Validity {
        self.granted.valid.clone()
    }

    /// The backend's name for the lease (etcd's lease ID, ...), for logs.
    pub fn id(&self) -> &str {
        &self.granted.id
    }

    /// The lease's time to live: how long its keys outlive the last renewal.
    pub fn ttl(&self) -> Duration {
        self.granted.ttl
    }

    /// Fires when the lease can no longer be guaranteed (revoked, expired, renewal failed,
    /// handle closed): from then on its keys may be gone. It fires before the server can
    /// remove them for lack of renewal (docs/SEMANTICS.md, "Leases").
    ///
    /// The token is returned owned: in `select!`, await `lost().cancelled_owned()` (or bind
    /// the token first); `lease.lost().cancelled()` borrows a temporary that is dropped at
    /// once (E0716). The same holds for every `lost()` of kv's recipes.
    ///
    /// ```
    /// # async fn work() {}
    /// # async fn f(lease: kv_core::Lease) {
    /// tokio::select! {
    ///     _ = lease.lost().cancelled_owned() => println!("lease lost: stop"),
    ///     _ = work() => {}
    /// }
    /// # }
    /// ```
    pub fn lost(&self) -> CancellationToken {
        self.granted.lost.clone()
    }

    /// True once [`Lease::lost`] has fired, or its deadline ([`Lease::validity`]) has passed:
    /// checked against the clock, as [`LockGuard::is_lost`](crate::LockGuard::is_lost) is.
    pub fn is_lost(&self) -> bool {
        if self.granted.valid.expired() {
            self.granted.lost.cancel();
        }
        self.granted.lost.is_cancelled()
    }

    /// Deletes every key put with the lease, at once, and ends it. `Ok` means they are gone;
    /// an error cut off from the server is [`Error::is_outcome_unknown`] (some may be gone;
    /// the lease is no longer renewed, so the rest go within the TTL).
    pub async fn revoke(&self) -> Result<()> {
        self.granted.ops.revoke().await
    }

    /// For backends: the lease's own state, if this lease is of type `T` (a lease of another
    /// backend is not).
    pub fn ops<T: LeaseOps>(&self) -> Option<&T> {
        self.granted.ops.as_any().downcast_ref()
    }
}

impl PartialEq for Lease {
    fn eq(&self, other: &Lease) -> bool {
        Arc::ptr_eq(&self.granted, &other.granted)
    }
}

impl Eq for Lease {}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.granted.id)
            .field("ttl", &self.granted.ttl)
            .field("lost", &self.granted.lost.is_cancelled())
            .finish()
    }
}

/// A [`LeaseOps`] for backends whose lease is renewed and revoked by one call each (etcd,
/// Consul, Redis, SQLite): [`renewed_lease`] runs the shared keep-alive and fires `lost`; the
/// backend finds its own `tag` (the lease's ID, the store it belongs to) with
/// `lease.ops::<Renewed<T>>()`.
pub struct Renewed<T> {
    /// What the backend needs to put a key with the lease.
    pub tag: T,
    stop: CancellationToken,
    lost: CancellationToken,
    revoke: Box<dyn Fn() -> BoxFuture<Result<()>> + Send + Sync>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<T: fmt::Debug> fmt::Debug for Renewed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renewed").field("tag", &self.tag).finish()
    }
}

/// A granted lease kept alive by `renew` (`Ok(false)`: the server no longer holds it) every
/// third of `ttl` from `sent` (when the grant was sent), until revoked (`revoke`, then `lost`
/// fires), every clone is dropped, or `closed` fires. The backend keeps `lease.lost()` in its
/// handle's list of leases to revoke on close.
pub fn renewed_lease<T, R, RF, V, VF>(
    id: String,
    ttl: Duration,
    sent: tokio::time::Instant,
    closed: &CancellationToken,
    tag: T,
    renew: R,
    revoke: V,
) -> Lease
where
    T: fmt::Debug + Send + Sync + 'static,
    R: FnMut() -> RF + Send + 'static,
    RF: std::future::Future<Output = Result<bool>> + Send + 'static,
    V: Fn() -> VF + Send + Sync + 'static,
    VF: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let lost = CancellationToken::new();
    let stop = closed.child_token();
    let valid = crate::lease::spawn_keep_alive(ttl, sent, stop.clone(), lost.clone(), renew);
    let ops = Renewed {
        tag,
        stop,
        lost: lost.clone(),
        revoke: Box::new(move || Box::pin(revoke())),
    };
    Lease::renewed(id, ttl, lost, valid, ops)
}

#[async_trait]
impl<T: fmt::Debug + Send + Sync + 'static> LeaseOps for Renewed<T> {
    async fn revoke(&self) -> Result<()> {
        self.stop.cancel();
        let revoked = (self.revoke)().await;
        self.lost.cancel();
        revoked
    }

    fn stop(&self) {
        self.stop.cancel();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<T: fmt::Debug + Send + Sync + 'static> Renewed<T> {
    /// The tag of `lease` if it is a `Renewed<T>` lease that `ours` accepts (else
    /// `InvalidArgument`: a lease of another store), while it lasts (else `LeaseLost`).
    pub fn tag_of(lease: &Lease, ours: impl Fn(&T) -> bool) -> Result<&T> {
        let tag = lease
            .ops::<Renewed<T>>()
            .map(|ops| &ops.tag)
            .filter(|tag| ours(tag))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "lease {} was granted by another store; use a lease from this one",
                    lease.id()
                ))
            })?;
        if lease.is_lost() {
            return Err(Error::LeaseLost {
                id: lease.id().to_owned(),
            });
        }
        Ok(tag)
    }
}

/// A numeric lease ID (memory, Redis, SQLite) for `Store::attach_lease`; `InvalidArgument`
/// when `id` is not one.
pub fn lease_number<T: std::str::FromStr>(id: &str) -> Result<T> {
    id.parse().map_err(|_| {
        Error::invalid_argument(format!("{id:?} is not a lease ID of this store (a number)"))
    })
}

/// For a lease taken up by a handle that did not grant it (`Store::attach_lease`): closing
/// the handle stops renewing it without revoking it, so its `lost` fires then (nothing
/// guarantees it any more). Returns the lease.
pub fn lost_on_close(lease: Lease, closed: &CancellationToken) -> Lease {
    let (closed, lost) = (closed.clone(), lease.lost());
    tokio::spawn(async move {
        tokio::select! {
            _ = closed.cancelled() => lost.cancel(),
            _ = lost.cancelled() => {}
        }
    });
    lease
}

/// A call for [`renewed_lease`] made through a weak reference to the backend's shared state:
/// `call(state)` while it lives, `Ok(gone)` once it was dropped (the store is gone, so is the
/// need to renew or revoke).
pub fn upgraded<S, R, F, Fut>(
    state: std::sync::Weak<S>,
    gone: R,
    call: F,
) -> impl Fn() -> BoxFuture<Result<R>> + Send + Sync + 'static
where
    S: Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
    F: Fn(Arc<S>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<R>> + Send + 'static,
{
    let call = Arc::new(call);
    move || {
        let (state, call, gone) = (state.upgrade(), call.clone(), gone.clone());
        Box::pin(async move {
            match state {
                Some(state) => call(state).await,
                None => Ok(gone),
            }
        })
    }
}
