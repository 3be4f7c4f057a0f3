//! Watches: the state at revision R, then etcd's watch from R + 1; resumed after disconnects.

use std::sync::Arc;

use crate::client::pb::etcdserverpb::{WatchCreateRequest, WatchResponse};
use crate::client::pb::mvccpb::{Event, event::EventType};
use crate::client::{self, Watch as EtcdStream};
use bytes::Bytes;
use kv_core::backend::{WatchSender, resume_watch, watch_channel};
use kv_core::{Error, EventKind, Key, Result, WatchEvent, WatchOptions, WatchStream, covers};

use crate::{Inner, revision_in};

/// Opens a watch on `path` (a key, or with `tree` a prefix).
pub(crate) async fn open(
    inner: Arc<Inner>,
    path: &str,
    options: WatchOptions,
) -> Result<WatchStream> {
    let tree = options.tree;
    inner.capabilities.check_watch(&options)?;
    let (initial, next) = match options.since {
        Some(since) => (Vec::new(), i64::try_from(since).unwrap_or(i64::MAX - 1) + 1),
        None => {
            let (pairs, revision) = if tree {
                inner.list_at(path, 0).await?
            } else {
                let response = inner
                    .read("watch", |client| {
                        let request = client::get(inner.layout.data_key(path));
                        async move { client.range(request).await }
                    })
                    .await?;
                let revision = revision_in(response.header.as_ref());
                (
                    response
                        .kvs
                        .into_iter()
                        .filter_map(|kv| inner.pair(kv))
                        .collect(),
                    revision,
                )
            };
            let events = pairs
                .into_iter()
                .map(|p| WatchEvent {
                    kind: EventKind::Put,
                    key: p.key,
                    value: p.value,
                    version: p.version,
                })
                .collect();
            (events, revision + 1)
        }
    };
    let watcher = Watcher {
        inner,
        path: path.to_owned(),
        tree,
        next,
        resumed: false,
        drop_next: false,
    };
    let stream = watcher.connect().await?;
    let (sender, events) = watch_channel(initial, path, &options);
    tokio::spawn(watcher.run(stream, sender));
    Ok(events)
}

struct Watcher {
    inner: Arc<Inner>,
    path: String,
    tree: bool,
    /// The revision to resume from.
    next: i64,
    /// Reconnected at least once (for the planted bugs of the self-test).
    resumed: bool,
    /// Drop the next event (a planted bug of the self-test).
    drop_next: bool,
}

impl Watcher {
    /// Starts an etcd watch from `next` and waits for its confirmation.
    async fn connect(&self) -> Result<EtcdStream> {
        let layout = &self.inner.layout;
        let (key, range_end) = if self.tree {
            // [root/p, root/p0) covers root/p and root/p/...; siblings such as root/p-x fall in
            // it too and are filtered out by `event`.
            let (start, end) = if self.path.is_empty() {
                let all = layout.below("");
                (all.start, all.end)
            } else {
                let key = layout.data_key(&self.path);
                (key.clone().into_bytes(), format!("{key}0").into_bytes())
            };
            (start, end)
        } else {
            (layout.data_key(&self.path).into_bytes(), Vec::new())
        };
        let create = WatchCreateRequest {
            key,
            range_end,
            // Planted bug (self-test only): resume at the last revision seen.
            start_revision: if self.resumed && kv_core::failpoint::armed("watch-resume-at-last") {
                self.next - 1
            } else {
                self.next
            },
            ..WatchCreateRequest::default()
        };
        let mut stream = self
            .inner
            .call("watch", self.inner.client().watch(create))
            .await?;
        let first = self.inner.call("watch", stream.message()).await?;
        match first {
            Some(response) if response.canceled => Err(self.cancelled(&response)),
            Some(response) if response.created => Ok(stream),
            _ => Err(Error::unavailable("etcd did not confirm the watch", None)),
        }
    }

    fn cancelled(&self, response: &WatchResponse) -> Error {
        if response.compact_revision > 0 {
            Error::Compacted {
                requested: u64::try_from(self.next - 1).unwrap_or(0),
                oldest: u64::try_from(response.compact_revision).unwrap_or(0),
            }
        } else {
            Error::unavailable(
                format!("etcd cancelled the watch: {}", response.cancel_reason),
                None,
            )
        }
    }

    /// Forwards events until the consumer leaves, the store closes, or the watch is lost.
    async fn run(mut self, mut stream: EtcdStream, mut sender: WatchSender) {
        loop {
            let message = tokio::select! {
                _ = self.inner.closed.cancelled() => return sender.fail(Error::Closed),
                _ = sender.closed() => return,
                message = stream.message() => message,
            };
            match message {
                Ok(Some(response)) if response.canceled => {
                    return sender.fail(self.cancelled(&response));
                }
                Ok(Some(response)) => {
                    for event in &response.events {
                        let Some(event) = self.event(event) else {
                            continue;
                        };
                        if std::mem::take(&mut self.drop_next) {
                            continue;
                        }
                        if !sender.send(event) {
                            return;
                        }
                    }
                }
                Ok(None) | Err(_) => match self.reconnect(&sender).await {
                    Ok(resumed) => {
                        stream = resumed;
                        self.drop_next = kv_core::failpoint::armed("watch-drop-on-reconnect");
                    }
                    Err(error) => return sender.fail(error),
                },
            }
        }
    }

    /// The kv event of an etcd event, if it concerns this watch.
    fn event(&mut self, event: &Event) -> Option<WatchEvent> {
        let kv = event.kv.as_ref()?;
        self.next = self.next.max(kv.mod_revision + 1);
        let key = self.inner.layout.kv_key(&kv.key)?;
        let concerned = if self.tree {
            covers(&self.path, key)
        } else {
            key == self.path
        };
        if !concerned {
            return None;
        }
        let (kind, value) = match event.r#type() {
            EventType::Put => (EventKind::Put, Bytes::copy_from_slice(&kv.value)),
            EventType::Delete => (EventKind::Delete, Bytes::new()),
        };
        Some(WatchEvent {
            kind,
            key: Key::parse(key).ok()?,
            value,
            version: u64::try_from(kv.mod_revision).ok()?,
        })
    }

    /// Re-creates the watch from the last revision seen, retrying for a while.
    async fn reconnect(&mut self, sender: &WatchSender) -> Result<EtcdStream> {
        self.resumed = true;
        resume_watch(sender, &self.inner.closed, self.inner.timeout * 3, || {
            self.connect()
        })
        .await
    }
}
