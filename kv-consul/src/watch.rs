//! Watches: Consul blocking queries, each answer compared with the last to produce Put and
//! Delete events. Versions between two answers may be coalesced; the final state always
//! arrives. A key's TTL ends it in the watch at its expiry time, before Consul deletes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kv_core::{
    Error, EventKind, Key, Result, WatchEvent, WatchOptions, WatchSender, WatchStream,
    resume_watch, watch_channel,
};

use crate::Inner;
use crate::api::Entry;
use crate::layout::{expired, now_ms};

/// Longest wait of one blocking query.
const BLOCK: Duration = Duration::from_secs(30);

/// What a watch last saw of one key.
struct Seen {
    value: Bytes,
    version: u64,
    /// Expiry time in Unix milliseconds, 0 for none.
    expires: u64,
}

/// The state of one watch: what it covers and what it has seen.
struct Watcher {
    inner: Arc<Inner>,
    /// The raw Consul key or prefix to query.
    raw: String,
    recurse: bool,
    /// The kv key or prefix the events must fall under.
    prefix: String,
    seen: BTreeMap<Key, Seen>,
    index: u64,
}

/// Starts a watch of one key (`recurse` false) or of every key a prefix covers.
pub(crate) async fn start(
    inner: Arc<Inner>,
    target: &str,
    recurse: bool,
    options: WatchOptions,
) -> Result<WatchStream> {
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
        prefix: target.to_owned(),
        seen: BTreeMap::new(),
        index: 0,
    };
    let read = watcher
        .inner
        .api
        .read("watch", &watcher.raw, recurse, None)
        .await?;
    let initial = watcher.apply(read.entries, read.index);
    let (sender, stream) = watch_channel(initial, options.buffer);
    tokio::spawn(watcher.run(sender));
    Ok(stream)
}

impl Watcher {
    /// Follows the key or prefix until the consumer leaves, the store closes or Consul is lost.
    async fn run(mut self, mut sender: WatchSender) {
        loop {
            let now = now_ms();
            let events = self.expire(now);
            if !send_all(&mut sender, events) {
                return;
            }
            let wait = self
                .next_expiry()
                .map_or(BLOCK, |at| Duration::from_millis(at.saturating_sub(now)))
                .clamp(Duration::from_millis(1), BLOCK);
            let read = tokio::select! {
                _ = self.inner.closed.cancelled() => return sender.fail(Error::Closed),
                _ = sender.closed() => return,
                read = self.inner.api.read("watch", &self.raw, self.recurse, Some((self.index, wait))) => read,
            };
            let read = match read {
                Ok(read) => read,
                Err(error) if error.is_retryable() => {
                    let (inner, raw, recurse) =
                        (self.inner.clone(), self.raw.clone(), self.recurse);
                    let resumed =
                        resume_watch(&sender, &inner.closed, inner.api.timeout * 3, || {
                            inner.api.read("watch", &raw, recurse, None)
                        })
                        .await;
                    match resumed {
                        Ok(read) => read,
                        Err(error) => return sender.fail(error),
                    }
                }
                Err(error) => return sender.fail(error),
            };
            let events = self.apply(read.entries, read.index);
            if !send_all(&mut sender, events) {
                return;
            }
        }
    }

    /// Takes in a new answer; returns the events that turn the last answer into this one,
    /// in version order.
    fn apply(&mut self, entries: Vec<Entry>, index: u64) -> Vec<WatchEvent> {
        // Consul's index may go backwards (a restored snapshot): start over from 0 then.
        let index = if index < self.index { 0 } else { index };
        self.index = index;
        let now = now_ms();
        let mut current = BTreeMap::new();
        for entry in entries {
            if expired(entry.flags, now) {
                continue;
            }
            let key = if self.recurse {
                self.inner.layout.kv_key(&entry.key, &self.prefix)
            } else {
                self.inner
                    .layout
                    .kv_key(&entry.key, &self.prefix)
                    .filter(|k| *k == self.prefix)
            };
            if let Some(key) = key {
                current.insert(
                    Key::from_normalized(key),
                    Seen {
                        value: entry.value,
                        version: entry.modify_index,
                        expires: entry.flags,
                    },
                );
            }
        }
        let mut events = Vec::new();
        for (key, seen) in &current {
            if self
                .seen
                .get(key)
                .is_none_or(|old| old.version != seen.version)
            {
                events.push(event(
                    EventKind::Put,
                    key.clone(),
                    seen.value.clone(),
                    seen.version,
                ));
            }
        }
        for (key, old) in &self.seen {
            if !current.contains_key(key) {
                let version = index.max(old.version + 1);
                events.push(event(EventKind::Delete, key.clone(), Bytes::new(), version));
            }
        }
        events.sort_by_key(|e| e.version);
        self.seen = current;
        events
    }

    /// Delete events for the keys whose TTL has passed by `now`.
    fn expire(&mut self, now: u64) -> Vec<WatchEvent> {
        let gone: Vec<Key> = self
            .seen
            .iter()
            .filter(|(_, s)| expired(s.expires, now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut events: Vec<WatchEvent> = gone
            .into_iter()
            .filter_map(|key| {
                let old = self.seen.remove(&key)?;
                let version = self.index.max(old.version + 1);
                Some(event(EventKind::Delete, key, Bytes::new(), version))
            })
            .collect();
        events.sort_by_key(|e| e.version);
        events
    }

    /// The earliest expiry among the keys in view.
    fn next_expiry(&self) -> Option<u64> {
        self.seen
            .values()
            .filter(|s| s.expires != 0)
            .map(|s| s.expires)
            .min()
    }
}

fn event(kind: EventKind, key: Key, value: Bytes, version: u64) -> WatchEvent {
    WatchEvent {
        kind,
        key,
        value,
        version,
    }
}

/// Sends events in order; `false` once the watch is over (lagged or dropped).
fn send_all(sender: &mut WatchSender, events: Vec<WatchEvent>) -> bool {
    events.into_iter().all(|e| sender.send(e))
}
