//! Key leases (`Store::grant`): a ZooKeeper session of the lease's own, whose timeout is the
//! lease's TTL, owning the keys' value nodes as ephemeral nodes (at the second value name, so a
//! later put without the lease replaces the node instead of rewriting it in place). ZooKeeper
//! keeps the session alive while the client runs and removes its nodes when it ends.

use std::any::Any;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::LeaseOps;
use kv_core::{CancellationToken, Error, Lease, Result};
use zookeeper_client as zk;

use crate::{Inner, map_error, timed_raw};

/// A lease's session and the value nodes created on it.
pub(crate) struct LeaseSession {
    /// Taken (and so closed, once no call holds a clone) when the lease ends.
    client: Mutex<Option<zk::Client>>,
    pub session_id: i64,
    ttl: Duration,
    nodes: Mutex<HashSet<String>>,
    lost: CancellationToken,
    stop: CancellationToken,
    id: String,
}

impl LeaseSession {
    /// The session's client, or `LeaseLost` once the lease has ended.
    pub fn client(&self) -> Result<zk::Client> {
        let client = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match client {
            Some(client) if !self.lost.is_cancelled() => Ok(client),
            _ => Err(Error::LeaseLost {
                id: self.id.clone(),
            }),
        }
    }

    /// Records a value node the session may own: called before its create is sent, so that
    /// a create whose answer was lost is deleted on revoke too.
    pub fn created(&self, path: String) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path);
    }

    /// Ends the lease now: deletes the value nodes the session still owns (each only at the
    /// version read, so a node rewritten without the lease stays), closes the session, fires
    /// `lost`. `Ok` once none is left; else `OutcomeUnknown` (some may stay until the session,
    /// closed or left to expire, ends within the TTL), and a later call tries the rest through
    /// the store's own session.
    pub async fn end(&self, inner: &Inner) -> Result<()> {
        self.stop.cancel();
        let own = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        // The session's own client while it lives (its requests are ordered after the
        // session's creates), else the store's.
        let client = match own.clone().filter(|c| !c.state().is_terminated()) {
            Some(client) => Ok(Some(client)),
            None if self
                .nodes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty() =>
            {
                Ok(None)
            }
            None => inner.client().await.map(Some),
        };
        let deleted = match client {
            Ok(Some(client)) => self.delete_nodes(&client, inner).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        // Dropping the last client closes the session (ZooKeeper deletes what it still owns).
        drop(own);
        self.lost.cancel();
        deleted.map_err(|e| Error::OutcomeUnknown {
            operation: "revoke",
            reason: format!(
                "{e}; the lease's keys go when its session ends, within {:?}",
                self.ttl
            ),
        })
    }

    /// Deletes every recorded node the session owns, within one call's budget; each node found
    /// gone (or no longer the session's) is forgotten.
    async fn delete_nodes(&self, client: &zk::Client, inner: &Inner) -> Result<()> {
        let budget = kv_core::backend::Budget::new(inner.timeout);
        let nodes: Vec<String> = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for path in nodes {
            loop {
                let stat = timed_raw("revoke", budget.remaining(), client.check_stat(&path))
                    .await?
                    .map_err(|e| map_error("revoke", e))?;
                let Some(stat) = stat.filter(|s| s.ephemeral_owner == self.session_id) else {
                    break;
                };
                let delete = client.delete(&path, Some(stat.version));
                match timed_raw("revoke", budget.remaining(), delete).await? {
                    Ok(()) => {
                        if let Some(key) = inner.layout.key_of_value(&path) {
                            inner.reclaimer.schedule(&key);
                        }
                        break;
                    }
                    // Deleted or rewritten meanwhile: look again.
                    Err(zk::Error::NoNode | zk::Error::BadVersion) => continue,
                    Err(e) => return Err(map_error("revoke", e)),
                }
            }
            self.nodes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&path);
        }
        Ok(())
    }
}

/// A ZooKeeper lease's side of a [`Lease`].
pub(crate) struct ZooKeeperLeaseOps {
    inner: Arc<Inner>,
    pub session: Arc<LeaseSession>,
}

impl std::fmt::Debug for ZooKeeperLeaseOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZooKeeperLeaseOps")
            .field("session", &self.session.id)
            .finish()
    }
}

/// Opens the lease's session; its timeout must not exceed the TTL (the server clamps it to
/// its own range).
pub(crate) async fn grant(inner: &Arc<Inner>, ttl: Duration) -> Result<Lease> {
    let client = inner.connection.connect(ttl).await?;
    if client.session_timeout() > ttl {
        return Err(Error::invalid_argument(format!(
            "the ZooKeeper servers' shortest session is {:?} (minSessionTimeout): a lease TTL \
             of {ttl:?} cannot be kept; use at least that",
            client.session_timeout()
        )));
    }
    let lost = CancellationToken::new();
    let stop = CancellationToken::new();
    tokio::spawn(crate::lock::watch_session(
        client.state_watcher(),
        stop.clone(),
        lost.clone(),
    ));
    let session_id = client.session_id().0;
    let id = format!("{session_id:x}");
    let session = Arc::new(LeaseSession {
        client: Mutex::new(Some(client)),
        session_id,
        ttl,
        nodes: Mutex::new(HashSet::new()),
        lost: lost.clone(),
        stop,
        id: id.clone(),
    });
    inner.leases.hold(session.clone(), lost.clone());
    let ops = ZooKeeperLeaseOps {
        inner: inner.clone(),
        session,
    };
    Ok(Lease::new(id, ttl, lost, ops))
}

/// The session of `lease`: `InvalidArgument` for another backend's lease.
pub(crate) fn session_of(lease: &Lease) -> Result<Arc<LeaseSession>> {
    lease
        .ops::<ZooKeeperLeaseOps>()
        .map(|ops| ops.session.clone())
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "lease {} was not granted by a ZooKeeper store; use a lease from this one",
                lease.id()
            ))
        })
}

#[async_trait]
impl LeaseOps for ZooKeeperLeaseOps {
    async fn revoke(&self) -> Result<()> {
        let ended = self.session.end(&self.inner).await;
        self.inner.leases.forget(|s| Arc::ptr_eq(s, &self.session));
        ended
    }

    /// Nobody renews the lease any more: the session (and its nodes) ends one TTL later, as
    /// ZooKeeper would end it after a crash.
    fn stop(&self) {
        let session = self.session.clone();
        session.stop.cancel();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(session.ttl).await;
                let client = session
                    .client
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                drop(client);
                session.lost.cancel();
            });
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
