//! Coordination recipes on any store with leases: [`Election`] (one leader, observable) and
//! [`Limiter`] (at most N holders). Both are built on `grant`, a `MustNotExist` CAS with the
//! lease, and watches, so they hold wherever the conformance suite passes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::grant::Lease;
use crate::key::Key;
use crate::store::{Store, WatchStream};
use crate::types::{EventKind, Precondition, PutOptions, WatchOptions};

/// Default lease TTL of a leader or limiter holder.
pub const DEFAULT_RECIPE_TTL: Duration = Duration::from_secs(15);

/// Waits until `key` (with `tree`, a key below it) is seen missing: a Delete, or nothing there
/// when the watch starts; `Err` if the watch fails or `lease` is lost first.
async fn until_missing(store: &dyn Store, key: &str, tree: bool, lease: &Lease) -> Result<()> {
    let lost = lease.lost();
    let options = WatchOptions::default().synced();
    let mut watch = match tree {
        true => store.watch_tree(key, options).await?,
        false => store.watch(key, options).await?,
    };
    let mut present = false;
    loop {
        let event = tokio::select! {
            event = next(&mut watch) => event?,
            _ = lost.cancelled() => return Err(Error::LeaseLost { id: lease.id().to_owned() }),
        };
        match event.kind {
            EventKind::Put => present = true,
            EventKind::Synced if !present => return Ok(()),
            EventKind::Synced => {}
            EventKind::Delete => return Ok(()),
        }
    }
}

/// The next item of a watch; its end without an error is `Unavailable`.
async fn next(watch: &mut WatchStream) -> Result<crate::types::WatchEvent> {
    std::future::poll_fn(|cx| watch.as_mut().poll_next(cx))
        .await
        .unwrap_or_else(|| Err(Error::unavailable("the watch ended", None)))
}

/// Leader election: the leader is whoever holds the key, written with `MustNotExist` and the
/// candidate's lease; the others wait for it to go (resignation, or its lease expiring).
///
/// ```
/// # async fn demo(store: std::sync::Arc<dyn kv_core::Store>) -> kv_core::Result<()> {
/// use kv_core::Election;
/// let election = Election::new(store, "services/scheduler/leader")?;
/// let leadership = election.campaign("node-1:8080").await?; // waits until elected
/// tokio::select! {
///     _ = leadership.lost().cancelled_owned() => { /* stop leading: another may be elected */ }
///     _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => leadership.resign().await?,
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Election {
    store: Arc<dyn Store>,
    key: Key,
    ttl: Duration,
}

impl Election {
    /// An election on `key` of `store` (leases of [`DEFAULT_RECIPE_TTL`]).
    pub fn new(store: Arc<dyn Store>, key: &str) -> Result<Election> {
        Ok(Election {
            store,
            key: Key::parse(key)?,
            ttl: DEFAULT_RECIPE_TTL,
        })
    }

    /// Sets the leader's lease TTL: how long a crashed leader keeps the office.
    pub fn ttl(mut self, ttl: Duration) -> Election {
        self.ttl = ttl;
        self
    }

    /// Waits until elected with `value` (an address, a name) and returns the leadership.
    /// Dropping the future withdraws the candidacy.
    pub async fn campaign(&self, value: impl Into<Bytes>) -> Result<Leadership> {
        let value = value.into();
        let lease = self.store.grant(self.ttl).await?;
        let options = PutOptions::default().lease(&lease);
        let key = self.key.as_str();
        loop {
            match self
                .store
                .atomic_put(key, &value, Precondition::MustNotExist, options.clone())
                .await
            {
                Ok(version) => {
                    return Ok(Leadership {
                        store: self.store.clone(),
                        key: self.key.clone(),
                        lease,
                        version,
                        resigned: false,
                    });
                }
                Err(Error::Conflict { .. }) => {
                    until_missing(&*self.store, key, false, &lease).await?
                }
                Err(error) => {
                    let _ = lease.revoke().await;
                    return Err(error);
                }
            }
        }
    }

    /// Leads whenever it can, until `stop` is cancelled: campaigns with `value`, runs
    /// `lead(term)` while it leads, and campaigns again after the leadership was lost (its
    /// lease expired or could not be renewed: a partition, a server restart, this process
    /// frozen past the TTL) or a campaign failed for a reason that may pass (the store
    /// unreachable, the campaign's own lease lost during an outage), pausing 0.1 s doubling
    /// to 2 s between attempts with a `tracing` warning. When the leadership is lost the
    /// `lead` future is dropped at once — its work cancelled — but work a frozen process had
    /// already sent is stopped only by fencing its writes with [`Term::fence`].
    ///
    /// Returns `Ok(())` when `stop` is cancelled (resigning if leading) or `lead` returns
    /// (its work is done: resigns); an error that will not pass (`Closed`, `Auth`, a bad
    /// key) ends it.
    ///
    /// ```
    /// # async fn demo(store: std::sync::Arc<dyn kv_core::Store>) -> kv_core::Result<()> {
    /// use kv_core::{Election, StoreExt};
    /// let stop = tokio_util::sync::CancellationToken::new();
    /// let election = Election::new(store.clone(), "services/scheduler/leader")?;
    /// election
    ///     .run("node-1", stop, |term| {
    ///         let store = store.clone();
    ///         async move {
    ///             loop {
    ///                 // Lands only while this term lasts, even from a frozen process.
    ///                 let fences = [term.fence()];
    ///                 let _ = store.update_fenced("jobs/ticks", &fences, |n| {
    ///                     let n: u64 = n.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0);
    ///                     Ok((n + 1).to_string().into_bytes())
    ///                 }).await;
    ///                 tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    ///             }
    ///         }
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn run<F, Fut>(
        &self,
        value: impl Into<Bytes>,
        stop: CancellationToken,
        mut lead: F,
    ) -> Result<()>
    where
        F: FnMut(Term) -> Fut + Send,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let value = value.into();
        let mut pause = Healing::default();
        loop {
            let campaign = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                campaign = self.campaign(value.clone()) => campaign,
            };
            let leadership = match campaign {
                Ok(leadership) => leadership,
                Err(error) if heals(&error) => {
                    tracing::warn!(target: "kv", key = %self.key, %error, "election: campaigning again");
                    if !pause.wait(&stop).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            pause = Healing::default();
            let lost = leadership.lost();
            let work = lead(leadership.term());
            tokio::select! {
                _ = stop.cancelled() => return leadership.resign().await,
                () = work => return leadership.resign().await,
                _ = lost.cancelled() => {
                    tracing::warn!(target: "kv", key = %self.key, "election: leadership lost; campaigning again");
                }
            }
        }
    }

    /// The current leader's value, if there is a leader.
    pub async fn leader(&self) -> Result<Option<Bytes>> {
        Ok(self.store.get(self.key.as_str()).await?.map(|p| p.value))
    }

    /// The leader as it changes: the current one first (`None`: no leader), then every change.
    /// Ends with an error, never silently, like any watch.
    pub async fn observe(&self) -> Result<LeaderStream> {
        let watch = self
            .store
            .watch(self.key.as_str(), WatchOptions::default().synced())
            .await?;
        Ok(LeaderStream {
            watch,
            seen_initial: false,
        })
    }
}

/// The stream of [`Election::observe`]: `Some(value)` when a leader is elected or proclaims,
/// `None` when there is none.
pub struct LeaderStream {
    watch: WatchStream,
    seen_initial: bool,
}

impl Stream for LeaderStream {
    type Item = Result<Option<Bytes>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let event = match self.watch.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => event,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            match event.kind {
                EventKind::Put => {
                    self.seen_initial = true;
                    return Poll::Ready(Some(Ok(Some(event.value))));
                }
                EventKind::Delete => return Poll::Ready(Some(Ok(None))),
                EventKind::Synced if !self.seen_initial => {
                    self.seen_initial = true;
                    return Poll::Ready(Some(Ok(None)));
                }
                EventKind::Synced => {}
            }
        }
    }
}

/// Being the leader: held while the lease is renewed.
pub struct Leadership {
    store: Arc<dyn Store>,
    key: Key,
    lease: Lease,
    version: u64,
    /// Resigned already: nothing to do on drop.
    resigned: bool,
}

impl Leadership {
    /// Fires when leadership can no longer be guaranteed (the lease was lost): stop acting
    /// as leader. It fires before another candidate can be elected.
    pub fn lost(&self) -> CancellationToken {
        self.lease.lost()
    }

    /// Until when leadership is guaranteed: its lease's [`Lease::validity`].
    pub fn validity(&self) -> crate::Validity {
        self.lease.validity()
    }

    /// The leader key's version when elected (or last proclaimed): it increases from one
    /// leader to the next, so it serves as a fencing token.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The fencing token, as [`LockGuard::fencing_token`](crate::LockGuard::fencing_token)
    /// names it: [`Leadership::version`], higher for every later leader.
    pub fn fencing_token(&self) -> u64 {
        self.version
    }

    /// The leader key.
    pub fn key(&self) -> &str {
        self.key.as_str()
    }

    /// A condition that holds exactly while this is the leadership in office: the leader key
    /// still at this version. Put it in a transaction ([`Txn::when`](crate::Txn::when)) or
    /// pass it to [`StoreExt::update_fenced`](crate::StoreExt::update_fenced), and a write
    /// lands only while this instance leads — even one sent by a process that was paused past
    /// its lease and has not yet seen [`Leadership::lost`] fire, which `lost()` alone cannot
    /// prevent.
    pub fn fence(&self) -> (String, crate::Condition) {
        self.term().fence()
    }

    /// This leadership as its work sees it ([`Election::run`]): its fence, token and end.
    pub fn term(&self) -> Term {
        Term {
            key: self.key.clone(),
            version: self.version,
            lost: self.lease.lost(),
            lease_id: self.lease.id().to_owned(),
        }
    }

    /// Changes the leader's value (observers see it), only while still the leader.
    pub async fn proclaim(&mut self, value: impl Into<Bytes>) -> Result<()> {
        let options = PutOptions::default().lease(&self.lease);
        self.version = self
            .store
            .atomic_put(
                self.key.as_str(),
                &value.into(),
                Precondition::Version(self.version),
                options,
            )
            .await?;
        Ok(())
    }

    /// Gives up leadership at once (the key goes; a waiting candidate is elected).
    pub async fn resign(mut self) -> Result<()> {
        self.resigned = true;
        self.lease.revoke().await
    }
}

impl Drop for Leadership {
    /// Dropped without [`Leadership::resign`]: resigns in the background (on the current
    /// Tokio runtime, if any), as a dropped [`LockGuard`](crate::LockGuard) releases its lock —
    /// a waiting candidate is elected at once rather than after the lease's TTL.
    fn drop(&mut self) {
        if self.resigned {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let lease = self.lease.clone();
            runtime.spawn(async move {
                let _ = lease.revoke().await;
            });
        }
    }
}

/// One leadership as the leader's work in [`Election::run`] sees it.
#[derive(Debug, Clone)]
pub struct Term {
    key: Key,
    version: u64,
    lost: CancellationToken,
    lease_id: String,
}

impl Term {
    /// See [`Leadership::fence`]: the leader key still at this term's version.
    pub fn fence(&self) -> (String, crate::Condition) {
        (
            self.key.as_str().to_owned(),
            crate::Condition::Version(self.version),
        )
    }

    /// See [`Leadership::fencing_token`].
    pub fn fencing_token(&self) -> u64 {
        self.version
    }

    /// Fires when the term ends (see [`Leadership::lost`]).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// The ID of the lease the leader key lives under: put keys with it
    /// ([`Store::attach_lease`]) and they go when the term ends.
    pub fn lease_id(&self) -> &str {
        &self.lease_id
    }
}

/// True if a recipe should try again after `error`: it may pass (the store unreachable, an
/// answer lost) or the recipe's own lease ended (during an outage).
pub(crate) fn heals(error: &Error) -> bool {
    error.is_transient() || matches!(error, Error::LeaseLost { .. } | Error::LockLost { .. })
}

/// The pause of a self-healing recipe between attempts: 0.1 s, doubling to 2 s, jittered.
#[derive(Debug)]
pub(crate) struct Healing {
    next: Duration,
}

impl Default for Healing {
    fn default() -> Healing {
        Healing {
            next: Duration::from_millis(100),
        }
    }
}

impl Healing {
    /// Sleeps the next pause; `false` if `stop` was cancelled first.
    pub(crate) async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let pause = crate::retry::jittered(self.next);
        self.next = (self.next * 2).min(Duration::from_secs(2));
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(pause) => true,
        }
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("key", &self.key)
            .field("version", &self.version)
            .field("lease", &self.lease)
            .finish()
    }
}

/// A counting semaphore: at most `limit` holders of a named limit at once, each with a lease
/// (a crashed holder's slot frees itself). Slots are the keys `NAME/0` .. `NAME/<limit-1>`.
///
/// ```
/// # async fn demo(store: std::sync::Arc<dyn kv_core::Store>) -> kv_core::Result<()> {
/// use kv_core::Limiter;
/// let limiter = Limiter::new(store, "limits/backups", 2)?;
/// let permit = limiter.acquire("node-1").await?; // waits while 2 others hold it
/// // ... at most two backups run at once ...
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Limiter {
    store: Arc<dyn Store>,
    name: Key,
    limit: usize,
    ttl: Duration,
}

impl Limiter {
    /// A limit of `limit` (at least 1) holders named `name` on `store`.
    pub fn new(store: Arc<dyn Store>, name: &str, limit: usize) -> Result<Limiter> {
        if limit == 0 {
            return Err(Error::invalid_argument(
                "a limiter needs a limit of at least 1",
            ));
        }
        Ok(Limiter {
            store,
            name: Key::parse(name)?,
            limit,
            ttl: DEFAULT_RECIPE_TTL,
        })
    }

    /// Sets the holders' lease TTL: how long a crashed holder keeps its slot.
    pub fn ttl(mut self, ttl: Duration) -> Limiter {
        self.ttl = ttl;
        self
    }

    /// Takes a free slot now, with `value` (who holds it); `None` if all are taken.
    pub async fn try_acquire(&self, value: impl Into<Bytes>) -> Result<Option<Permit>> {
        let lease = self.store.grant(self.ttl).await?;
        let taken = self.take(&value.into(), &lease).await;
        if !matches!(taken, Ok(Some(_))) {
            let _ = lease.revoke().await;
        }
        taken
    }

    /// Waits for a free slot and takes it. Dropping the future abandons the wait.
    pub async fn acquire(&self, value: impl Into<Bytes>) -> Result<Permit> {
        let value = value.into();
        let lease = self.store.grant(self.ttl).await?;
        loop {
            match self.take(&value, &lease).await {
                Ok(Some(permit)) => return Ok(permit),
                Ok(None) => {
                    // A slot freed meanwhile shows as a Delete on the watch.
                    self.wait_for_a_slot(&lease).await?;
                }
                Err(error) => {
                    let _ = lease.revoke().await;
                    return Err(error);
                }
            }
        }
    }

    /// The values of the current holders, by slot.
    pub async fn holders(&self) -> Result<Vec<Bytes>> {
        Ok(self
            .store
            .list(self.name.as_str())
            .await?
            .into_iter()
            .map(|p| p.value)
            .collect())
    }

    async fn take(&self, value: &Bytes, lease: &Lease) -> Result<Option<Permit>> {
        for slot in 0..self.limit {
            let key = format!("{}/{slot}", self.name.as_str());
            let options = PutOptions::default().lease(lease);
            match self
                .store
                .atomic_put(&key, value, Precondition::MustNotExist, options)
                .await
            {
                Ok(_) => {
                    return Ok(Some(Permit {
                        lease: lease.clone(),
                        slot,
                    }));
                }
                Err(Error::Conflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }

    /// Waits until a slot is seen free (or for a while: a slot freed between the attempt and
    /// the watch's start is then found by the next attempt).
    async fn wait_for_a_slot(&self, lease: &Lease) -> Result<()> {
        let waited = until_missing(&*self.store, self.name.as_str(), true, lease);
        match tokio::time::timeout(Duration::from_secs(1), waited).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }
}

/// A held slot of a [`Limiter`].
#[derive(Debug)]
pub struct Permit {
    lease: Lease,
    slot: usize,
}

impl Permit {
    /// Which slot is held (0 .. limit).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Fires when the slot can no longer be guaranteed (the lease was lost).
    pub fn lost(&self) -> CancellationToken {
        self.lease.lost()
    }

    /// Frees the slot at once.
    pub async fn release(self) -> Result<()> {
        self.lease.revoke().await
    }
}
