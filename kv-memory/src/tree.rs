//! The hierarchical namespace: one node per path segment, so subtree operations cost what the
//! subtree costs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_core::{Key, KvPair, LockScope, WatchEvent};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

/// A path node: maybe a value, maybe watchers, maybe a lock, maybe children.
#[derive(Default)]
pub(crate) struct Node {
    pub children: BTreeMap<Box<str>, Node>,
    pub entry: Option<Entry>,
    pub watchers: Vec<Watcher>,
    pub lock: Option<Holder>,
    /// Locks held on nodes strictly below this one.
    pub locks_below: u32,
}

/// A stored value.
pub(crate) struct Entry {
    pub key: Key,
    pub value: Bytes,
    pub version: u64,
    pub expires_at: Option<Instant>,
}

impl Entry {
    pub fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    pub fn to_pair(&self) -> KvPair {
        KvPair {
            key: self.key.clone(),
            value: self.value.clone(),
            version: self.version,
        }
    }
}

/// A registered watch: its end of a bounded channel.
pub(crate) struct Watcher {
    pub id: u64,
    /// Tree watch (everything below) or key watch (this node only).
    pub recursive: bool,
    pub tx: mpsc::Sender<WatchEvent>,
    /// Set when the buffer overflowed; the stream then ends with `WatchLagged`.
    pub lagged: Arc<AtomicBool>,
}

/// The current holder of the lock on a node.
pub(crate) struct Holder {
    pub lease: u64,
    pub token: u64,
    pub scope: LockScope,
    pub value: Bytes,
    pub ttl: Duration,
    pub deadline: Instant,
    pub lost: CancellationToken,
}

impl Node {
    /// The node at `path` (a normalized key, `""` for the root), if it exists.
    pub fn find(&self, path: &str) -> Option<&Node> {
        segments(path).try_fold(self, |node, seg| node.children.get(seg))
    }

    /// The node at `path`, if it exists.
    pub fn find_mut(&mut self, path: &str) -> Option<&mut Node> {
        segments(path).try_fold(self, |node, seg| node.children.get_mut(seg))
    }

    /// The node at `path`, created (with its parents) if missing.
    pub fn find_or_create(&mut self, path: &str) -> &mut Node {
        segments(path).fold(self, |node, seg| {
            if !node.children.contains_key(seg) {
                node.children.insert(seg.into(), Node::default());
            }
            node.children.get_mut(seg).expect("inserted above")
        })
    }

    /// The live entry of this node.
    pub fn live_entry(&self, now: Instant) -> Option<&Entry> {
        self.entry.as_ref().filter(|e| e.is_live(now))
    }

    /// True if the node holds nothing and can be removed.
    fn is_empty(&self) -> bool {
        self.entry.is_none()
            && self.children.is_empty()
            && self.watchers.is_empty()
            && self.lock.is_none()
    }

    /// True if any live key is at or below this node.
    pub fn has_live_key(&self, now: Instant) -> bool {
        self.live_entry(now).is_some() || self.children.values().any(|c| c.has_live_key(now))
    }

    /// Appends every live entry at or below this node, in segment order.
    pub fn collect_live(&self, now: Instant, out: &mut Vec<KvPair>) {
        if let Some(entry) = self.live_entry(now) {
            out.push(entry.to_pair());
        }
        for child in self.children.values() {
            child.collect_live(now, out);
        }
    }

    /// Removes every entry at or below this node (live or expired), returning them, and drops
    /// the nodes left empty below it.
    pub fn take_entries(&mut self, out: &mut Vec<Entry>) {
        out.extend(self.entry.take());
        self.children.retain(|_, child| {
            child.take_entries(out);
            !child.is_empty()
        });
    }

    /// Removes the empty nodes along `path`, deepest first.
    pub fn prune(&mut self, path: &str) {
        fn walk<'a>(node: &mut Node, mut segs: impl Iterator<Item = &'a str>) {
            if let Some(seg) = segs.next()
                && let Some(child) = node.children.get_mut(seg)
            {
                walk(child, segs);
                if child.is_empty() {
                    node.children.remove(seg);
                }
            }
        }
        walk(self, segments(path));
    }

    /// Sends `event` to this node's watchers (`exact`: the node is the event's key, so key
    /// watchers see it too). Watchers whose buffer is full are marked lagged and dropped; those
    /// whose stream is gone are dropped. Never waits.
    pub fn notify(&mut self, event: &WatchEvent, exact: bool) {
        self.watchers.retain(|w| {
            if !w.recursive && !exact {
                return true;
            }
            match w.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    w.lagged.store(true, Ordering::Release);
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Visits every lock held at or below this node.
    pub fn visit_locks(&self, visit: &mut impl FnMut(&Holder)) {
        if let Some(holder) = &self.lock {
            visit(holder);
        }
        if self.locks_below > 0 {
            for child in self.children.values() {
                child.visit_locks(visit);
            }
        }
    }
}

/// The segments of a normalized path; none for the root (`""`).
pub(crate) fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}
