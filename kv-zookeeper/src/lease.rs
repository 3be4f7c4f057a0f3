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

use crate::{Inner, timed_raw};

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

    /// Records a value node created on the session (removed explicitly on revoke).
    pub fn created(&self, path: String) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path);
    }

    /// Ends the lease now: deletes the value nodes the session still owns (each only at the
    /// version read, so a node rewritten meanwhile stays), closes the session, fires `lost`.
    pub async fn end(&self, inner: &Inner) {
        self.stop.cancel();
        let client = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(client) = client {
            let nodes: Vec<String> = self
                .nodes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .collect();
            for path in nodes {
                if let Ok(Ok(Some(stat))) =
                    timed_raw("revoke", inner.timeout, client.check_stat(&path)).await
                    && stat.ephemeral_owner == self.session_id
                {
                    let delete = client.delete(&path, Some(stat.version));
                    let _ = timed_raw("revoke", inner.timeout, delete).await;
                    if let Some(key) = inner.layout.key_of_value(&path) {
                        inner.reclaimer.schedule(&key);
                    }
                }
            }
        }
        self.lost.cancel();
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
    inner
        .leases
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(session.clone());
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
        self.session.end(&self.inner).await;
        self.inner
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, &self.session));
        Ok(())
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
