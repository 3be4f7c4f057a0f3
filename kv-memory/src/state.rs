//! The namespace's state and every operation on it. All methods run under the namespace's
//! lock and never wait: the async layer around them lives in `lib.rs`, `watch.rs`, `lock.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_core::{
    Child, Error, EventKind, Key, KvPair, LockHolder, LockScope, Precondition, Result, WatchEvent,
    covers,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::history::History;
use crate::tree::{Entry, Holder, Node, Watcher, segments};

/// Work the timer task does when a deadline passes.
enum Timer {
    /// Remove `key` if it still holds `version` and has expired.
    Expire { key: Key, version: u64 },
    /// Expire the lease if it has not been renewed.
    Lease { lease: u64 },
}

/// Where a lease's lock lives and which handle took it.
struct LeaseInfo {
    key: Key,
    owner: u64,
}

/// A new watch's receiving end and its initial events.
pub(crate) struct Registration {
    pub id: u64,
    pub rx: mpsc::Receiver<WatchEvent>,
    pub lagged: Arc<AtomicBool>,
    pub initial: Vec<WatchEvent>,
}

/// A granted lock.
pub(crate) struct Grant {
    pub lease: u64,
    pub token: u64,
    pub lost: CancellationToken,
}

/// A lock request.
pub(crate) struct LockRequest<'a> {
    pub key: &'a Key,
    pub scope: LockScope,
    pub ttl: Duration,
    pub value: &'a Bytes,
    pub owner: u64,
}

/// Everything a namespace holds.
pub(crate) struct State {
    root: Node,
    /// The last version handed out (writes, deletes, expiries and lock grants).
    revision: u64,
    history: History,
    timers: BTreeMap<(Instant, u64), Timer>,
    next_id: u64,
    leases: HashMap<u64, LeaseInfo>,
}

impl State {
    pub fn new(history: usize) -> State {
        State {
            root: Node::default(),
            revision: 0,
            history: History::new(history),
            timers: BTreeMap::new(),
            next_id: 0,
            leases: HashMap::new(),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // ----- reads -----

    pub fn get(&self, key: &str, now: Instant) -> Option<KvPair> {
        self.root.find(key)?.live_entry(now).map(Entry::to_pair)
    }

    pub fn exists(&self, key: &str, now: Instant) -> bool {
        self.root
            .find(key)
            .is_some_and(|n| n.live_entry(now).is_some())
    }

    pub fn list(&self, prefix: &str, now: Instant) -> Vec<KvPair> {
        let mut pairs = Vec::new();
        if let Some(node) = self.root.find(prefix) {
            node.collect_live(now, &mut pairs);
            // Segment order differs from byte order where a segment continues with a byte
            // below '/' (`a-b` < `a/c`); the contract is byte order.
            pairs.sort_by(|a, b| a.key.cmp(&b.key));
        }
        pairs
    }

    pub fn list_children(&self, prefix: &str, now: Instant) -> Vec<Child> {
        let Some(node) = self.root.find(prefix) else {
            return Vec::new();
        };
        let mut children: Vec<Child> = node
            .children
            .iter()
            .filter_map(|(name, child)| {
                let has_value = child.live_entry(now).is_some();
                let has_children = child.children.values().any(|c| c.has_live_key(now));
                (has_value || has_children).then(|| Child {
                    key: match child.live_entry(now) {
                        Some(entry) => entry.key.clone(),
                        None if prefix.is_empty() => Key::from_normalized(name),
                        None => Key::from_normalized(&format!("{prefix}/{name}")),
                    },
                    has_value,
                    has_children,
                })
            })
            .collect();
        children.sort_by(|a, b| a.key.cmp(&b.key));
        children
    }

    // ----- writes -----

    /// Writes `value` under `key` if `precondition` holds; returns the version and, for a TTL
    /// write, the expiry deadline (the timer task must be woken).
    pub fn put(
        &mut self,
        key: &str,
        value: Bytes,
        expires_at: Option<Instant>,
        precondition: Option<Precondition>,
        now: Instant,
    ) -> Result<u64> {
        self.reap_if_expired(key, now);
        let current = self
            .root
            .find(key)
            .and_then(|n| n.entry.as_ref())
            .map(|e| e.version);
        match (precondition, current) {
            (Some(Precondition::MustNotExist), Some(v)) => {
                return Err(Error::conflict(
                    key,
                    format!("the key exists (version {v})"),
                ));
            }
            (Some(Precondition::Version(want)), None) => {
                return Err(Error::conflict(
                    key,
                    format!("the key does not exist (expected version {want})"),
                ));
            }
            (Some(Precondition::Version(want)), Some(v)) if v != want => {
                return Err(Error::conflict(
                    key,
                    format!("the version is {v}, expected {want}"),
                ));
            }
            _ => {}
        }
        self.revision += 1;
        let version = self.revision;
        let node = self.root.find_or_create(key);
        let key = match &node.entry {
            Some(entry) => entry.key.clone(),
            None => Key::from_normalized(key),
        };
        node.entry = Some(Entry {
            key: key.clone(),
            value: value.clone(),
            version,
            expires_at,
        });
        if let Some(at) = expires_at {
            self.add_timer(
                at,
                Timer::Expire {
                    key: key.clone(),
                    version,
                },
            );
        }
        self.publish(WatchEvent {
            kind: EventKind::Put,
            key,
            value,
            version,
        });
        Ok(version)
    }

    /// Deletes `key` (only if it has `expected` version, when given); returns whether a live
    /// key was removed.
    pub fn delete(&mut self, key: &str, expected: Option<u64>, now: Instant) -> Result<bool> {
        self.reap_if_expired(key, now);
        if let Some(want) = expected {
            match self.root.find(key).and_then(|n| n.entry.as_ref()) {
                None => {
                    return Err(Error::conflict(
                        key,
                        format!("the key does not exist (expected version {want})"),
                    ));
                }
                Some(e) if e.version != want => {
                    return Err(Error::conflict(
                        key,
                        format!("the version is {}, expected {want}", e.version),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(self.remove_entry(key).is_some())
    }

    /// Removes the prefix key and everything below it in one revision; returns how many live
    /// keys were removed.
    pub fn delete_tree(&mut self, prefix: &str, now: Instant) -> u64 {
        let Some(node) = self.root.find_mut(prefix) else {
            return 0;
        };
        let mut removed = Vec::new();
        node.take_entries(&mut removed);
        self.root.prune(prefix);
        if removed.is_empty() {
            return 0;
        }
        removed.sort_by(|a, b| a.key.cmp(&b.key));
        self.revision += 1;
        let version = self.revision;
        let live = removed.iter().filter(|e| e.is_live(now)).count();
        for entry in removed {
            self.publish(WatchEvent {
                kind: EventKind::Delete,
                key: entry.key,
                value: Bytes::new(),
                version,
            });
        }
        live as u64
    }

    fn reap_if_expired(&mut self, key: &str, now: Instant) {
        let expired = self
            .root
            .find(key)
            .and_then(|n| n.entry.as_ref())
            .is_some_and(|e| !e.is_live(now));
        if expired {
            self.remove_entry(key);
        }
    }

    /// Removes the entry at `key` (live or not) with a Delete event; returns it.
    fn remove_entry(&mut self, key: &str) -> Option<Entry> {
        let entry = self.root.find_mut(key)?.entry.take()?;
        self.revision += 1;
        self.publish(WatchEvent {
            kind: EventKind::Delete,
            key: entry.key.clone(),
            value: Bytes::new(),
            version: self.revision,
        });
        self.root.prune(key);
        Some(entry)
    }

    /// Records `event` in the history and sends it to every watcher it concerns: tree watchers
    /// on each node from the root down to the key, key watchers on the key's node.
    fn publish(&mut self, event: WatchEvent) {
        self.history.push(&event);
        let mut node = &mut self.root;
        node.notify(&event, false);
        let mut segs = segments(event.key.as_str()).peekable();
        while let Some(seg) = segs.next() {
            let Some(child) = node.children.get_mut(seg) else {
                return;
            };
            node = child;
            if !node.watchers.is_empty() {
                node.notify(&event, segs.peek().is_none());
            }
        }
    }

    // ----- watches -----

    /// Registers a watch on `path` (one key, or a tree when `recursive`) and returns its
    /// initial events: the current state, or the history after `since`. Both are taken under
    /// the same lock as the registration, so no change falls between them.
    pub fn watch(
        &mut self,
        path: &str,
        recursive: bool,
        since: Option<u64>,
        buffer: usize,
        now: Instant,
    ) -> Result<Registration> {
        let initial = match since {
            Some(since) => self.history.since(since, |e| {
                if recursive {
                    covers(path, e.key.as_str())
                } else {
                    e.key.as_str() == path
                }
            })?,
            None => {
                let pairs = if recursive {
                    self.list(path, now)
                } else {
                    self.get(path, now).into_iter().collect()
                };
                pairs
                    .into_iter()
                    .map(|p| WatchEvent {
                        kind: EventKind::Put,
                        key: p.key,
                        value: p.value,
                        version: p.version,
                    })
                    .collect()
            }
        };
        let (tx, rx) = mpsc::channel(buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id();
        self.root.find_or_create(path).watchers.push(Watcher {
            id,
            recursive,
            tx,
            lagged: lagged.clone(),
        });
        Ok(Registration {
            id,
            rx,
            lagged,
            initial,
        })
    }

    pub fn unwatch(&mut self, path: &str, id: u64) {
        if let Some(node) = self.root.find_mut(path) {
            node.watchers.retain(|w| w.id != id);
            self.root.prune(path);
        }
    }

    // ----- locks -----

    /// Takes the lock if nothing conflicts (expired leases in the way are expired first).
    pub fn try_lock(&mut self, request: &LockRequest<'_>, now: Instant) -> Option<Grant> {
        let path = request.key.as_str();
        let subtree = request.scope == LockScope::Subtree;
        self.expire_due_locks(path, subtree, now);
        if self.lock_conflict(path, subtree) {
            return None;
        }
        let deadline = now.checked_add(request.ttl)?;
        self.revision += 1;
        let token = self.revision;
        let lease = self.next_id();
        let lost = CancellationToken::new();
        let mut node = &mut self.root;
        for seg in segments(path) {
            node.locks_below += 1;
            node = node.find_or_create(seg);
        }
        node.lock = Some(Holder {
            lease,
            token,
            scope: request.scope,
            value: request.value.clone(),
            ttl: request.ttl,
            deadline,
            lost: lost.clone(),
        });
        self.leases.insert(
            lease,
            LeaseInfo {
                key: request.key.clone(),
                owner: request.owner,
            },
        );
        self.add_timer(deadline, Timer::Lease { lease });
        Some(Grant { lease, token, lost })
    }

    /// True if a live lock on `path`, a subtree lock on an ancestor, or (for a subtree
    /// request) a lock below `path` is held.
    fn lock_conflict(&self, path: &str, subtree: bool) -> bool {
        let mut node = &self.root;
        for seg in segments(path) {
            if node
                .lock
                .as_ref()
                .is_some_and(|h| h.scope == LockScope::Subtree)
            {
                return true;
            }
            match node.children.get(seg) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.lock.is_some() || (subtree && node.locks_below > 0)
    }

    /// Expires the leases past their deadline that could conflict with a lock on `path`.
    fn expire_due_locks(&mut self, path: &str, subtree: bool, now: Instant) {
        let mut due = Vec::new();
        let mut node = Some(&self.root);
        for seg in segments(path) {
            node = node.and_then(|n| n.children.get(seg));
            if let Some(holder) = node.and_then(|n| n.lock.as_ref())
                && holder.deadline <= now
            {
                due.push(holder.lease);
            }
        }
        if subtree && let Some(node) = node {
            node.visit_locks(&mut |holder| {
                if holder.deadline <= now {
                    due.push(holder.lease);
                }
            });
        }
        for lease in due {
            self.expire_lease(lease);
        }
    }

    /// Extends the lease by its TTL; false if it is gone or already past its deadline (it is
    /// then expired, and its `lost` token fires).
    pub fn renew(&mut self, lease: u64, now: Instant) -> bool {
        let Some(info) = self.leases.get(&lease) else {
            return false;
        };
        let key = info.key.clone();
        let Some(holder) = self
            .root
            .find_mut(key.as_str())
            .and_then(|n| n.lock.as_mut())
            .filter(|h| h.lease == lease)
        else {
            return false;
        };
        if holder.deadline <= now {
            self.expire_lease(lease);
            return false;
        }
        let Some(deadline) = now.checked_add(holder.ttl) else {
            return true;
        };
        holder.deadline = deadline;
        self.add_timer(deadline, Timer::Lease { lease });
        true
    }

    /// Releases a lease; returns its holder if it was still held.
    pub fn release(&mut self, lease: u64) -> Option<Holder> {
        let info = self.leases.remove(&lease)?;
        let path = info.key.as_str();
        let node = self.root.find_mut(path)?;
        if node.lock.as_ref().map(|h| h.lease) != Some(lease) {
            return None;
        }
        let holder = node.lock.take();
        let mut node = &mut self.root;
        for seg in segments(path) {
            node.locks_below -= 1;
            node = node.children.get_mut(seg)?;
        }
        self.root.prune(path);
        holder
    }

    /// Releases a lease and fires its `lost` token.
    fn expire_lease(&mut self, lease: u64) -> bool {
        match self.release(lease) {
            Some(holder) => {
                holder.lost.cancel();
                true
            }
            None => false,
        }
    }

    /// Releases every lease taken through handle `owner` (which is closing), firing `lost`.
    pub fn release_owner(&mut self, owner: u64) -> bool {
        let leases: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, info)| info.owner == owner)
            .map(|(lease, _)| *lease)
            .collect();
        let mut freed = false;
        for lease in leases {
            freed |= self.expire_lease(lease);
        }
        freed
    }

    pub fn holder(&self, key: &str, now: Instant) -> Option<LockHolder> {
        self.root
            .find(key)?
            .lock
            .as_ref()
            .filter(|h| h.deadline > now)
            .map(|h| LockHolder {
                value: h.value.clone(),
                fencing_token: h.token,
            })
    }

    // ----- timers -----

    fn add_timer(&mut self, at: Instant, timer: Timer) {
        let seq = self.next_id();
        self.timers.insert((at, seq), timer);
    }

    /// Runs every timer due at `now`. Returns the next deadline and whether a lock was freed.
    pub fn run_due_timers(&mut self, now: Instant) -> (Option<Instant>, bool) {
        let mut freed = false;
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Expire { key, version } => {
                    let due = self
                        .root
                        .find(key.as_str())
                        .and_then(|n| n.entry.as_ref())
                        .is_some_and(|e| e.version == version && !e.is_live(now));
                    if due {
                        self.remove_entry(key.as_str());
                    }
                }
                Timer::Lease { lease } => {
                    let due = self.leases.get(&lease).is_some_and(|info| {
                        self.root
                            .find(info.key.as_str())
                            .and_then(|n| n.lock.as_ref())
                            .is_some_and(|h| h.lease == lease && h.deadline <= now)
                    });
                    if due {
                        freed |= self.expire_lease(lease);
                    }
                }
            }
        }
        (self.timers.first_key_value().map(|((at, _), _)| *at), freed)
    }
}
