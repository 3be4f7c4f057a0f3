//! Watches: Consul blocking queries, each answer compared with the last to produce Put and
//! Delete events. Versions between two answers may be coalesced; the final state always
//! arrives. A key's TTL ends it in the watch at its expiry time, before Consul deletes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::{Observed, WatchSender, WatchView, resume_watch, watch_channel};
use kv_core::{Error, Key, Result, WatchEvent, WatchOptions, WatchStream};

use crate::Inner;
use crate::api::{Entry, Read};
use crate::layout::now_ms;

/// Longest wait of one blocking query. It bounds how long a watch can go without hearing the
/// server: a connection that silently stopped (a partition that holds traffic) is noticed when
/// the query's timeout (this wait + 1/16 jitter + the store's timeout) passes, then resuming
/// gives up after 3 x the timeout: the watch ends within 12 s + 5 x the store's timeout
/// (docs/SEMANTICS.md, "Watch liveness").
const BLOCK: Duration = Duration::from_secs(10);

/// The state of one watch: what it covers and what it has delivered.
struct Watcher {
    inner: Arc<Inner>,
    /// The raw Consul key or prefix to query.
    raw: String,
    recurse: bool,
    /// The kv key or prefix the events must fall under.
    target: String,
    view: WatchView,
    index: u64,
}

/// Starts a watch of one key (`recurse` false) or of every key a prefix covers.
pub(crate) async fn start(
    inner: Arc<Inner>,
    target: &str,
    options: WatchOptions,
) -> Result<WatchStream> {
    let recurse = options.tree;
    inner.capabilities.check_watch(&options)?;
    let raw = if recurse {
        inner.raw_prefix(target)
    } else {
        inner.layout.data_key(target)
    };
    let mut watcher = Watcher {
        inner,
        raw,
        recurse,
        target: target.to_owned(),
        view: WatchView::default(),
        index: 0,
    };
    let read = watcher.read(None).await?;
    let mut initial = watcher.apply(read);
    initial.sort_by(|a, b| a.key.cmp(&b.key));
    let (sender, stream) = watch_channel(initial, target, &options);
    tokio::spawn(watcher.run(sender));
    Ok(stream)
}

impl Watcher {
    async fn read(&self, wait: Option<(u64, Duration)>) -> Result<Read<Vec<Entry>>> {
        self.inner
            .api
            .read("watch", &self.raw, self.recurse, wait)
            .await
    }

    /// Follows the key or prefix until the consumer leaves, the store closes or Consul is lost.
    async fn run(mut self, mut sender: WatchSender) {
        loop {
            let now = now_ms();
            let expired = self.view.expire(now, self.index);
            if !send_all(&mut sender, expired) {
                return;
            }
            let wait = self
                .view
                .next_expiry()
                .map_or(BLOCK, |at| Duration::from_millis(at.saturating_sub(now)))
                .clamp(Duration::from_millis(1), BLOCK);
            let read = tokio::select! {
                _ = self.inner.closed.cancelled() => return sender.fail(Error::Closed),
                _ = sender.closed() => return,
                read = self.read(Some((self.index, wait))) => read,
            };
            let read = match read {
                Ok(read) => read,
                Err(error) if error.is_transient() => {
                    let patience = self.inner.api.timeout * 3;
                    let closed = self.inner.closed.clone();
                    match resume_watch(&sender, &closed, patience, || self.read(None)).await {
                        Ok(read) => read,
                        Err(error) => return sender.fail(error),
                    }
                }
                Err(error) => return sender.fail(error),
            };
            let events = self.apply(read);
            if !send_all(&mut sender, events) {
                return;
            }
        }
    }

    /// Takes in a new answer; returns the events that turn the last answer into this one,
    /// in version order.
    fn apply(&mut self, read: Read<Vec<Entry>>) -> Vec<WatchEvent> {
        // Consul's index may go backwards (a restored snapshot): start over from 0 then.
        self.index = if read.index < self.index {
            0
        } else {
            read.index
        };
        let now = now_ms();
        let mut current = BTreeMap::new();
        for entry in read.entries {
            if entry.expired(now) {
                continue;
            }
            let Some(key) = self.inner.layout.kv_key(&entry.key, &self.target) else {
                continue;
            };
            if !self.recurse && key != self.target {
                continue;
            }
            let expires_ms = entry.expiry();
            current.insert(
                Key::from_normalized(key),
                Observed {
                    value: entry.value,
                    version: entry.modify_index,
                    expires_ms,
                },
            );
        }
        self.view.replace_all(current, self.index)
    }
}

/// Sends events in order; `false` once the watch is over (lagged or dropped).
fn send_all(sender: &mut WatchSender, events: Vec<WatchEvent>) -> bool {
    events.into_iter().all(|e| sender.send(e))
}
