//! Locks: the ephemeral-sequential recipe, generalized to subtrees. Every holder and waiter
//! of the store has one ephemeral sequential node in the lock directory, created on a session
//! of its own whose timeout is the lock's TTL; a node holds its lock when no node with a lower
//! sequence number conflicts with it (same key, or a subtree lock over the other's key), and
//! waits for the nearest such node to go. Waiting is first come, first served. The fencing
//! token is the node's creation zxid. `lost()` fires as soon as the holder's session is
//! disconnected or ends, and at the latest at its validity deadline: a session timeout after the
//! last request kv sent on the session and had answered (`keep_alive`), before ZooKeeper can
//! expire the session and let the next waiter in.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kv_core::backend::LeasedLock;
use kv_core::{CancellationToken, Error, Key, Lock, LockGuard, LockHolder, LockOptions, Result};
use zookeeper_client as zk;

use crate::layout::{Layout, LockNode};
use crate::{Inner, map_error, timed, timed_raw, version_of};

/// A lock on a key or subtree of a ZooKeeper store.
pub(crate) struct ZooKeeperLock {
    inner: Arc<Inner>,
    key: Key,
    subtree: bool,
    options: LockOptions,
}

impl fmt::Debug for ZooKeeperLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZooKeeperLock")
            .field("key", &self.key)
            .field("subtree", &self.subtree)
            .finish()
    }
}

/// A node in the lock directory and the session that owns it. Dropping the last clone of the
/// session's client closes the session, which removes the node.
struct Contender {
    client: zk::Client,
    node: LockNode,
    path: String,
    fencing_token: u64,
}

impl ZooKeeperLock {
    /// A lock handle.
    pub fn boxed(
        inner: Arc<Inner>,
        key: Key,
        subtree: bool,
        options: LockOptions,
    ) -> Result<Box<dyn Lock>> {
        if options.ttl.is_zero() {
            return Err(Error::invalid_argument("a lock TTL must be positive"));
        }
        Ok(Box::new(ZooKeeperLock {
            inner,
            key,
            subtree,
            options,
        }))
    }

    /// Opens a session for this holder and queues its node.
    async fn enter(&self) -> Result<Contender> {
        self.inner.closed.check_open()?;
        let client = self.inner.connection.connect(self.options.ttl).await?;
        // The lease is the session, whose timeout the server clamps to its own range: a
        // longer one than asked would keep the lock after a crash for longer than the TTL.
        if client.session_timeout() > self.options.ttl {
            return Err(Error::invalid_argument(format!(
                "the ZooKeeper servers' shortest session is {:?} (minSessionTimeout): a lock TTL \
                 of {:?} cannot be kept; use at least that",
                client.session_timeout(),
                self.options.ttl
            )));
        }
        let dir = self.inner.layout.locks();
        let acls = self.inner.connection.acls();
        let container = zk::CreateMode::Container.with_acls(acls);
        let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(acls);
        let prefix = format!(
            "{dir}/{}",
            Layout::lock_name(self.subtree, self.key.as_str())
        );
        let (stat, sequence) = loop {
            match timed_raw(
                "lock",
                self.inner.timeout,
                client.create(&prefix, &self.options.value, &ephemeral),
            )
            .await?
            {
                Ok(created) => break created,
                Err(zk::Error::NoNode) => {
                    timed("lock", self.inner.timeout, client.mkdir(&dir, &container)).await?;
                }
                Err(error) => return Err(map_error("lock", error)),
            }
        };
        let name = format!(
            "{}{sequence}",
            Layout::lock_name(self.subtree, self.key.as_str())
        );
        let node = Layout::parse_lock_name(&name)
            .ok_or_else(|| Error::Backend(format!("unexpected lock node name {name}").into()))?;
        Ok(Contender {
            client,
            path: format!("{dir}/{name}"),
            node,
            fencing_token: version_of(stat.czxid),
        })
    }

    /// The nodes queued before `contender` that conflict with it, nearest last.
    async fn blockers(&self, contender: &Contender) -> Result<Vec<LockNode>> {
        let dir = self.inner.layout.locks();
        let names = timed(
            "lock",
            self.inner.timeout,
            contender.client.list_children(&dir),
        )
        .await?;
        let mut blockers: Vec<LockNode> = names
            .iter()
            .filter_map(|n| Layout::parse_lock_name(n))
            .filter(|n| n.sequence < contender.node.sequence && n.conflicts_with(&contender.node))
            .collect();
        blockers.sort_by_key(|n| n.sequence);
        Ok(blockers)
    }

    /// Turns a contender that holds the lock into a guard; `sent`: when the request that found
    /// it holding was sent (the session was alive on the server then).
    fn guard(&self, contender: Contender, sent: tokio::time::Instant) -> LockGuard {
        let watcher = contender.client.state_watcher();
        // The session is the lease: the server ends it a session timeout after the last
        // request it received. A request answered (sent at `sent`) proves the session alive
        // until `sent` + timeout, so the guard's validity follows the requests kv sends on the
        // session, one every third of the timeout (`keep_alive`): a holder frozen past it is
        // told at its first look (`is_lost`), and `kvctl lock`'s watchdog can stop its command.
        let leased = LeasedLock {
            key: &self.key,
            fencing_token: contender.fencing_token,
            closed: &self.inner.closed,
            held: (
                &self.inner.held,
                (contender.path.clone(), contender.client.clone()),
            ),
            ttl: contender.client.session_timeout(),
            renewed_sent: sent,
        };
        let session = contender.client.clone();
        let (inner, contender) = (self.inner.clone(), Arc::new(contender));
        let (guard, stop) = leased.guard(
            move || {
                let session = session.clone();
                async move {
                    match session.check_stat("/").await {
                        Ok(_) => Ok(true),
                        Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => Ok(false),
                        Err(error) => Err(map_error("lock", error)),
                    }
                }
            },
            move || release(inner.clone(), contender.clone()),
        );
        tokio::spawn(watch_session(watcher, stop, guard.lost()));
        guard
    }
}

#[async_trait]
impl Lock for ZooKeeperLock {
    fn key(&self) -> &Key {
        &self.key
    }

    async fn acquire(&self) -> Result<LockGuard> {
        let contender = self.enter().await?;
        loop {
            let sent = tokio::time::Instant::now();
            let Some(nearest) = self.blockers(&contender).await?.pop() else {
                return Ok(self.guard(contender, sent));
            };
            let path = format!("{}/{}", self.inner.layout.locks(), nearest.name);
            let (stat, gone) = timed(
                "lock",
                self.inner.timeout,
                contender.client.check_and_watch_stat(&path),
            )
            .await?;
            if stat.is_none() {
                continue;
            }
            let mut session = contender.client.state_watcher();
            tokio::select! {
                _ = gone.changed() => {}
                state = session.changed() => {
                    if state.is_terminated() || state == zk::SessionState::Disconnected {
                        return Err(Error::unavailable(
                            format!("the lock's ZooKeeper session was lost while waiting ({state:?})"),
                            None,
                        ));
                    }
                }
                _ = self.inner.closed.cancelled() => return Err(Error::Closed),
            }
        }
    }

    async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        let contender = self.enter().await?;
        let sent = tokio::time::Instant::now();
        if self.blockers(&contender).await?.is_empty() {
            return Ok(Some(self.guard(contender, sent)));
        }
        timed(
            "unlock",
            self.inner.timeout,
            contender.client.delete(&contender.path, None),
        )
        .await?;
        Ok(None)
    }

    async fn holder(&self) -> Result<Option<LockHolder>> {
        let client = self.inner.client().await?;
        let dir = self.inner.layout.locks();
        let names = match timed_raw(
            "lock holder",
            self.inner.timeout,
            client.list_children(&dir),
        )
        .await?
        {
            Ok(names) => names,
            Err(zk::Error::NoNode) => return Ok(None),
            Err(error) => return Err(map_error("lock holder", error)),
        };
        let mut nodes: Vec<LockNode> = names
            .iter()
            .filter_map(|n| Layout::parse_lock_name(n))
            .collect();
        nodes.sort_by_key(|n| n.sequence);
        let holder = nodes.iter().find(|n| {
            n.key == self.key.as_str()
                && n.subtree == self.subtree
                && !nodes
                    .iter()
                    .any(|o| o.sequence < n.sequence && o.conflicts_with(n))
        });
        let Some(holder) = holder else {
            return Ok(None);
        };
        let path = format!("{dir}/{}", holder.name);
        match timed_raw("lock holder", self.inner.timeout, client.get_data(&path)).await? {
            Ok((value, stat)) => Ok(Some(LockHolder {
                value: Bytes::from(value),
                fencing_token: version_of(stat.czxid),
            })),
            Err(zk::Error::NoNode) => Ok(None),
            Err(error) => Err(map_error("lock holder", error)),
        }
    }
}

/// Fires `lost` when the holder's session is disconnected or ends.
pub(crate) async fn watch_session(
    mut session: zk::StateWatcher,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    loop {
        let state = tokio::select! {
            _ = stop.cancelled() => return,
            state = session.changed() => state,
        };
        if state.is_terminated() || state == zk::SessionState::Disconnected {
            lost.cancel();
            return;
        }
    }
}

/// Deletes the holder's node; `false` if the lock had been lost before.
async fn release(inner: Arc<Inner>, contender: Arc<Contender>) -> Result<bool> {
    // Gone from the holdings: `close()` took it (and fired its `lost()`).
    let lost = inner.held.forget(|(path, _)| *path == contender.path).pop();
    let was_lost = lost.is_none_or(|lost| lost.is_cancelled());
    let after = inner.timeout.min(Duration::from_secs(5));
    let delete = contender.client.delete(&contender.path, None);
    match timed_raw("unlock", after, delete).await? {
        Ok(()) => Ok(!was_lost),
        Err(zk::Error::NoNode | zk::Error::SessionExpired) => Ok(false),
        Err(_) if was_lost => Ok(false),
        Err(error) => Err(map_error("unlock", error)),
    }
}
