//! Watches: a persistent watch (recursive for a prefix) on the store's session. Each node
//! event re-reads that value node, so intermediate versions may be coalesced. Events lost while
//! disconnected are recovered by re-reading everything the watch covers after the reconnect;
//! an expired session, or a disconnection longer than the patience, ends the watch with an
//! error. TTL keys leave the watch at their expiry time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::{Observed, WatchSender, WatchView, watch_channel};
use kv_core::{Error, Key, Result, WatchEvent, WatchOptions, WatchStream};
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::layout::now_ms;
use crate::value::Node;
use crate::{Inner, timed, version_of};

struct Watcher {
    inner: Arc<Inner>,
    client: zk::Client,
    /// The kv key or prefix watched.
    target: String,
    recurse: bool,
    view: WatchView,
}

/// Starts a watch of one key (`recurse` false) or of every key a prefix covers.
pub(crate) async fn start(
    inner: Arc<Inner>,
    target: &str,
    options: WatchOptions,
) -> Result<WatchStream> {
    let recurse = options.tree;
    inner.capabilities.check_watch(&options)?;
    let client = inner.client().await?;
    // Watch first, then read: a change in between shows up as an event, never as a gap.
    // A key's value lives in one of two nodes of its directory: watch the directory's subtree
    // and keep the events of those two.
    let path = inner.layout.dir(target);
    let mode = zk::AddWatchMode::PersistentRecursive;
    let events = timed("watch", inner.timeout, client.watch(&path, mode)).await?;
    let mut watcher = Watcher {
        inner,
        client,
        target: target.to_owned(),
        recurse,
        view: WatchView::default(),
    };
    let mut initial = watcher.resync().await?;
    initial.sort_by(|a, b| a.key.cmp(&b.key));
    let (sender, stream) = watch_channel(initial, target, &options);
    tokio::spawn(watcher.run(events, sender));
    Ok(stream)
}

impl Watcher {
    /// Everything the watch covers, read now, as events against what was delivered.
    ///
    /// A key gone since is deleted at its last version + 1: ZooKeeper before 3.9 does not say
    /// a delete's zxid, and that is at most the delete's and below any later write's to the
    /// key. (The newest version read + 1, used before, can be the key's next write's: the
    /// robustness runs saw `r/k0` deleted at 14244, then put at 14244.)
    async fn resync(&mut self) -> Result<Vec<WatchEvent>> {
        let current = if self.recurse {
            let walk = crate::tree::walk(&self.inner, &self.client, &self.target).await?;
            walk.live()
        } else {
            let state = self.inner.read_key(&self.client, &self.target).await?;
            let live = state
                .live()
                .map(|n| (Key::from_normalized(&self.target), n.clone()));
            live.into_iter().collect()
        };
        let current: BTreeMap<Key, Observed> = current
            .into_iter()
            .map(|(key, node)| (key, observed(&node)))
            .collect();
        Ok(self.view.replace_all(current, 0))
    }

    /// The event for one value node that changed, after re-reading its key.
    async fn refresh(&mut self, path: &str, zxid: i64) -> Result<Option<WatchEvent>> {
        let Some(key) = self.inner.layout.key_of_value(path) else {
            return Ok(None);
        };
        if !self.recurse && key != self.target {
            return Ok(None);
        }
        let state = self.inner.read_key(&self.client, &key).await?;
        // ZooKeeper 3.9+ tells the zxid of a delete; before, the view uses last version + 1.
        let delete_version = (zxid > 0).then(|| version_of(zxid));
        let now = state.live().map(observed);
        Ok(self
            .view
            .update(Key::from_normalized(&key), now, delete_version))
    }

    /// Registers the persistent watch again and re-reads everything it covers.
    ///
    /// zookeeper-client 0.11.2 does not re-register persistent watches after a reconnect (its
    /// `resend_watches` only ever sends the first kind of watch), so the server would hold none
    /// for this session and the watch would hear nothing more. A new `AddWatch` re-arms it; the
    /// old watcher is dropped after the new one exists, so no removal reaches the server. Watch
    /// first, then read: nothing falls in between.
    async fn rearm(&mut self, events: &mut zk::PersistentWatcher) -> Result<Vec<WatchEvent>> {
        let path = self.inner.layout.dir(&self.target);
        let mode = zk::AddWatchMode::PersistentRecursive;
        *events = timed("watch", self.inner.timeout, self.client.watch(&path, mode)).await?;
        self.resync().await
    }

    async fn run(mut self, mut events: zk::PersistentWatcher, mut sender: WatchSender) {
        let patience = self.inner.timeout * 3;
        let mut disconnected_since: Option<Instant> = None;
        loop {
            let now = now_ms();
            let expired = self.view.expire(now, 0);
            if !expired.into_iter().all(|e| sender.send(e)) {
                return;
            }
            let next_expiry = self
                .view
                .next_expiry()
                .map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(now)));
            // While disconnected, look at the session twice a second.
            let recheck = disconnected_since.map(|_| Instant::now() + Duration::from_millis(500));
            let wake = [next_expiry, recheck]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let result = tokio::select! {
                _ = self.inner.closed.cancelled() => return sender.fail(Error::Closed),
                _ = sender.closed() => return,
                _ = tokio::time::sleep_until(wake) => {
                    let Some(since) = disconnected_since else { continue };
                    if self.client.state() == zk::SessionState::SyncConnected {
                        disconnected_since = None;
                        Ok(None)
                    } else if since.elapsed() >= patience {
                        return sender.fail(Error::unavailable(
                            format!("lost the connection to ZooKeeper for {patience:?}; the watch ended"),
                            None,
                        ));
                    } else {
                        continue;
                    }
                }
                event = next_event(&mut events) => {
                let Some(event) = event else {
                    return sender.fail(Error::unavailable(
                        "the ZooKeeper client closed the watch; the watch ended",
                        None,
                    ));
                };
                match event.event_type {
                zk::EventType::Session => match event.session_state {
                    zk::SessionState::Disconnected => {
                        disconnected_since = Some(Instant::now());
                        continue;
                    }
                    zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                        if disconnected_since.take().is_none() {
                            continue;
                        }
                        // Events during the disconnection may be lost: re-arm, read again.
                        Ok(None)
                    }
                    state => {
                        return sender.fail(Error::unavailable(
                            format!("the ZooKeeper session ended ({state:?}); the watch ended"),
                            None,
                        ));
                    }
                },
                zk::EventType::NodeChildrenChanged => continue,
                _ => self
                    .refresh(&event.path, event.zxid)
                    .await
                    .map(|e| Some(e.into_iter().collect())),
                }},
            };
            // `None`: reconnected after a disconnection.
            let result = match result {
                Ok(None) => self.rearm(&mut events).await,
                Ok(Some(batch)) => Ok(batch),
                Err(error) => Err(error),
            };
            match result {
                Ok(batch) => {
                    if !batch.into_iter().all(|e| sender.send(e)) {
                        return;
                    }
                }
                Err(error) if error.is_transient() => {
                    // The connection dropped under the read: the session events that follow
                    // decide between a resync and the end of the watch.
                    disconnected_since.get_or_insert_with(Instant::now);
                }
                Err(error) => return sender.fail(error),
            }
        }
    }
}

/// The next event of a persistent watcher; `None` if the client dropped its side, which
/// zookeeper-client 0.11.2 reports by panicking in `changed()` (an unwrap on the closed channel)
/// rather than with an error: the panic stays in here and the watch ends with `Unavailable`.
async fn next_event(events: &mut zk::PersistentWatcher) -> Option<zk::WatchedEvent> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(events.changed())
        .catch_unwind()
        .await
        .ok()
}

fn observed(node: &Node) -> Observed {
    Observed {
        value: node.stored.value.clone(),
        version: version_of(node.stat.mzxid),
        expires_ms: node.stored.expires_ms,
    }
}
