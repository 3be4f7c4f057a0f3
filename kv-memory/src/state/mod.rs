//! The namespace's state and every operation on it. All methods run under the namespace's
//! lock and never wait: the async layer around them lives in `lib.rs`, `watch.rs`, `lock.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use kv_core::backend::{CheckedTxn, TxnOp};
use kv_core::{
    Child, Error, EventKind, Key, KvPair, LockHolder, LockScope, Precondition, Result, TxnOpResult,
    WatchEvent, covers,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::history::History;
use crate::journal::{Journal, Recovered, to_instant, to_system_time};
use crate::tree::{Entry, Holder, Node, Now, Watcher, segments};

mod leases;
mod locks;

pub(crate) use locks::LockRequest;

/// Work the timer task does when a deadline passes.
enum Timer {
    /// Remove `key` if it still holds `version` and has expired.
    Expire { key: Key, version: u64 },
    /// End a key lease (deleting its keys) if it has not been renewed.
    KeyLease { id: u64 },
    /// Expire the lease if it has not been renewed.
    Lease { lease: u64 },
}

/// Where a lease's lock lives and which handle took it.
struct LeaseInfo {
    key: Key,
    owner: u64,
}

/// A lease keys share (`Store::grant`): its keys' expiry follows its renewals.
struct KeyLease {
    ttl: Duration,
    expires_at: Instant,
    keys: hashbrown::HashSet<Key>,
    /// The handle that granted it (its leases are revoked when it closes).
    owner: u64,
    lost: CancellationToken,
}

/// A new watch's receiving end and its initial events.
pub(crate) struct Registration {
    pub id: u64,
    pub rx: mpsc::Receiver<WatchEvent>,
    pub lagged: Arc<AtomicBool>,
    pub initial: Vec<WatchEvent>,
}

/// Everything a namespace holds.
pub(crate) struct State {
    /// Every value, by key: point reads and overwrites touch only this.
    entries: HashMap<Key, Entry>,
    /// The path structure: which paths hold values, watchers and locks.
    root: Node,
    /// The last version handed out (writes, deletes, expiries and lock grants).
    revision: u64,
    history: History,
    timers: BTreeMap<(Instant, u64), Timer>,
    next_id: u64,
    leases: HashMap<u64, LeaseInfo>,
    key_leases: HashMap<u64, KeyLease>,
    /// Registered watches (some may have ended; they are dropped on their next event or when
    /// their stream is dropped). Zero means writes need not walk the tree for watchers.
    watchers: usize,
    /// Durable storage, written before each change is applied.
    journal: Option<Arc<dyn Journal>>,
}

impl State {
    pub fn new(history: usize) -> State {
        State {
            entries: HashMap::default(),
            root: Node::default(),
            revision: 0,
            history: History::new(history),
            timers: BTreeMap::new(),
            next_id: 0,
            leases: HashMap::new(),
            key_leases: HashMap::new(),
            watchers: 0,
            journal: None,
        }
    }

    /// A state seeded from durable storage, recording later changes in `journal`. Values
    /// that expired while nobody was running are removed by the timers right away.
    pub fn recover(history: usize, journal: Arc<dyn Journal>, recovered: Recovered) -> State {
        let mut state = State::new(history);
        state.history = History::starting_after(history, recovered.revision);
        state.revision = recovered.revision;
        for entry in recovered.entries {
            state.revision = state.revision.max(entry.version);
            let expires_at = entry.expires_at.map(to_instant);
            state.root.find_or_create(entry.key.as_str()).key = Some(entry.key.clone());
            if let Some(at) = expires_at {
                state.add_timer(
                    at,
                    Timer::Expire {
                        key: entry.key.clone(),
                        version: entry.version,
                    },
                );
            }
            state.entries.insert(
                entry.key,
                Entry {
                    value: entry.value,
                    version: entry.version,
                    expires_at,
                    // A recovered lease key is a TTL key: its lease ended with its process.
                    lease: None,
                },
            );
        }
        state.journal = Some(journal);
        state
    }

    /// Makes recorded changes durable.
    pub fn flush(&self) -> Result<()> {
        self.journal.as_ref().map_or(Ok(()), |j| j.flush())
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // ----- reads -----

    pub fn get(&self, key: &str, now: &Now) -> Option<KvPair> {
        let (key, entry) = self.entries.get_key_value(key)?;
        entry.is_live(now).then(|| entry.to_pair(key))
    }

    pub fn exists(&self, key: &str, now: &Now) -> bool {
        self.entries.get(key).is_some_and(|e| e.is_live(now))
    }

    pub fn list(&self, prefix: &str, now: &Now) -> Vec<KvPair> {
        let Some(node) = self.root.find(prefix) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        node.collect_keys(&mut keys);
        let mut pairs: Vec<KvPair> = keys
            .into_iter()
            .filter_map(|key| {
                self.entries
                    .get(key)
                    .filter(|e| e.is_live(now))
                    .map(|e| e.to_pair(key))
            })
            .collect();
        // The walk gives segment order, which differs from byte order only where a segment
        // continues with a byte below '/' (`a-b` < `a/c`): this sort is nearly free.
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        pairs
    }

    pub fn list_children(&self, prefix: &str, now: &Now) -> Vec<Child> {
        let Some(node) = self.root.find(prefix) else {
            return Vec::new();
        };
        let live = |key: &Key| self.entries.get(key).is_some_and(|e| e.is_live(now));
        let mut children: Vec<Child> = node
            .children
            .iter()
            .filter_map(|(name, child)| {
                let has_value = child.key.as_ref().is_some_and(live);
                let has_children = child.children.values().any(|c| c.any_key(&live));
                (has_value || has_children).then(|| Child {
                    key: match &child.key {
                        Some(key) => key.clone(),
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

    /// The version of the live value at `key`; an expired one is deleted first (with its
    /// Delete event), as if the timer had already run.
    fn current_version(&mut self, key: &str, now: &Now) -> Result<Option<u64>> {
        Ok(match self.entries.get(key) {
            Some(entry) if entry.is_live(now) => Some(entry.version),
            Some(_) => {
                self.remove_entry(key)?;
                None
            }
            None => None,
        })
    }

    /// Writes `value` under `key` if `precondition` holds; returns the version.
    pub fn put(
        &mut self,
        key: &str,
        value: Bytes,
        expires_at: Option<Instant>,
        lease: Option<u64>,
        precondition: Option<Precondition>,
        now: &Now,
    ) -> Result<u64> {
        let expires_at = match lease {
            Some(id) => Some(self.live_lease(id, now)?),
            None => expires_at,
        };
        let current = self.current_version(key, now)?;
        let failed = match (precondition, current) {
            (Some(Precondition::MustNotExist), Some(v)) => {
                Some(format!("the key exists (version {v})"))
            }
            (Some(Precondition::Version(want)), None) => {
                Some(format!("the key does not exist (expected version {want})"))
            }
            (Some(Precondition::Version(want)), Some(v)) if v != want => {
                Some(format!("the version is {v}, expected {want}"))
            }
            _ => None,
        };
        if let Some(reason) = failed {
            return Err(Error::conflict(key, reason));
        }
        let version = self.revision + 1;
        if let Some(journal) = &self.journal {
            let stored = match self.entries.get_key_value(key) {
                Some((stored, _)) => stored.clone(),
                None => Key::from_normalized(key),
            };
            journal.put(&stored, &value, version, expires_at.map(to_system_time))?;
        }
        self.revision = version;
        self.set_entry(key, value, version, expires_at, lease);
        Ok(version)
    }

    /// Applies a transaction checked by [`CheckedTxn`]'s rules: every condition is evaluated
    /// on the live state, then every write is journaled in one record and applied with one new
    /// version. Returns what each operation did.
    pub fn txn(&mut self, txn: &CheckedTxn, now: &Now) -> Result<Vec<TxnOpResult>> {
        for key in txn.keys() {
            // Drops expired entries first, so conditions and deletes see them as missing.
            self.current_version(key.as_str(), now)?;
        }
        txn.check_conditions(|key| {
            let entry = self.entries.get(key.as_str())?;
            Some((entry.value.as_ref(), entry.version))
        })?;
        let version = self.revision + 1;
        let deletes: Vec<Key> = txn
            .ops
            .iter()
            .filter_map(|op| match op {
                TxnOp::Delete { key } => self
                    .entries
                    .get_key_value(key.as_str())
                    .map(|(k, _)| k.clone()),
                TxnOp::Put { .. } => None,
            })
            .collect();
        let puts: Vec<(&Key, &[u8])> = txn
            .ops
            .iter()
            .filter_map(|op| match op {
                TxnOp::Put { key, value } => Some((key, value.as_ref())),
                TxnOp::Delete { .. } => None,
            })
            .collect();
        if puts.is_empty() && deletes.is_empty() {
            let missing = TxnOpResult::Delete { existed: false };
            return Ok(vec![missing; txn.ops.len()]);
        }
        if let Some(journal) = &self.journal {
            journal.commit(&puts, &deletes, version)?;
        }
        self.revision = version;
        let mut versions = Vec::with_capacity(txn.ops.len());
        for op in &txn.ops {
            versions.push(match op {
                TxnOp::Put { key, value } => {
                    self.set_entry(key.as_str(), value.clone(), version, None, None);
                    TxnOpResult::Put { version }
                }
                TxnOp::Delete { key } => TxnOpResult::Delete {
                    existed: self.drop_entry(key.as_str(), version).is_some(),
                },
            });
        }
        Ok(versions)
    }

    /// Stores `value` at `version` (the caller has advanced the revision and journaled it),
    /// schedules its expiry and publishes the Put event.
    fn set_entry(
        &mut self,
        key: &str,
        value: Bytes,
        version: u64,
        expires_at: Option<Instant>,
        lease: Option<u64>,
    ) {
        let entry = Entry {
            value: value.clone(),
            version,
            expires_at,
            lease,
        };
        let (key, previous) = match self.entries.get_key_value_mut(key) {
            Some((stored, slot)) => {
                let previous = std::mem::replace(slot, entry).lease;
                (stored.clone(), previous)
            }
            None => {
                let stored = Key::from_normalized(key);
                self.root.find_or_create(key).key = Some(stored.clone());
                self.entries.insert(stored.clone(), entry);
                (stored, None)
            }
        };
        // A key rewritten without its lease (or with another) leaves the old one.
        if let Some(old) = previous.filter(|old| Some(*old) != lease)
            && let Some(old) = self.key_leases.get_mut(&old)
        {
            old.keys.remove(&key);
        }
        if let Some(lease) = lease.and_then(|id| self.key_leases.get_mut(&id)) {
            lease.keys.insert(key.clone());
        }
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
    }

    /// Deletes `key` (only if it has `expected` version, when given); returns whether a live
    /// key was removed.
    pub fn delete(&mut self, key: &str, expected: Option<u64>, now: &Now) -> Result<bool> {
        let current = self.current_version(key, now)?;
        match (expected, current) {
            (Some(want), None) => Err(Error::conflict(
                key,
                format!("the key does not exist (expected version {want})"),
            )),
            (Some(want), Some(v)) if v != want => Err(Error::conflict(
                key,
                format!("the version is {v}, expected {want}"),
            )),
            (_, None) => Ok(false),
            (_, Some(_)) => Ok(self.remove_entry(key)?.is_some()),
        }
    }

    /// Removes the prefix key and everything below it in one revision; returns how many live
    /// keys were removed.
    pub fn delete_tree(&mut self, prefix: &str, now: &Now) -> Result<u64> {
        let version = self.revision + 1;
        if let Some(journal) = &self.journal {
            let mut keys = Vec::new();
            if let Some(node) = self.root.find(prefix) {
                node.collect_keys(&mut keys);
            }
            let keys: Vec<Key> = keys.into_iter().cloned().collect();
            if !keys.is_empty() {
                journal.delete(&keys, version)?;
            }
        }
        let Some(node) = self.root.find_mut(prefix) else {
            return Ok(0);
        };
        let mut keys = Vec::new();
        node.take_keys(&mut keys);
        self.root.prune(prefix);
        if keys.is_empty() {
            return Ok(0);
        }
        keys.sort();
        self.revision = version;
        let mut live = 0;
        for key in keys {
            if self.entries.remove(&key).is_some_and(|e| e.is_live(now)) {
                live += 1;
            }
            self.publish(WatchEvent {
                kind: EventKind::Delete,
                key,
                value: Bytes::new(),
                version,
            });
        }
        Ok(live)
    }

    /// Removes the value at `key` (live or not) with a Delete event; returns it.
    fn remove_entry(&mut self, key: &str) -> Result<Option<Entry>> {
        let Some((stored, _)) = self.entries.get_key_value(key) else {
            return Ok(None);
        };
        let version = self.revision + 1;
        if let Some(journal) = &self.journal {
            journal.delete(std::slice::from_ref(stored), version)?;
        }
        self.revision = version;
        Ok(self.drop_entry(key, version))
    }

    /// Removes the value at `key` at `version` (the caller has advanced the revision and
    /// journaled it) and publishes the Delete event.
    fn drop_entry(&mut self, key: &str, version: u64) -> Option<Entry> {
        let (key, entry) = self.entries.remove_entry(key)?;
        if let Some(lease) = entry.lease.and_then(|id| self.key_leases.get_mut(&id)) {
            lease.keys.remove(&key);
        }
        if let Some(node) = self.root.find_mut(key.as_str()) {
            node.key = None;
        }
        self.root.prune(key.as_str());
        self.publish(WatchEvent {
            kind: EventKind::Delete,
            key,
            value: Bytes::new(),
            version,
        });
        Some(entry)
    }

    /// Records `event` in the history and sends it to every watcher it concerns: tree watchers
    /// on each node from the root down to the key, key watchers on the key's node.
    fn publish(&mut self, event: WatchEvent) {
        self.history.push(&event);
        if self.watchers == 0 {
            return;
        }
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
        now: &Now,
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
        self.watchers += 1;
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
        self.watchers -= 1;
        if let Some(node) = self.root.find_mut(path) {
            node.watchers.retain(|w| w.id != id);
            self.root.prune(path);
        }
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
                        .entries
                        .get(&key)
                        .is_some_and(|e| e.version == version && !e.is_live(&Now::at(now)));
                    if due && self.remove_entry(key.as_str()).is_err() {
                        // The journal failed: keep the value (it stays invisible to reads)
                        // and try again shortly.
                        let retry = now + std::time::Duration::from_secs(1);
                        self.add_timer(retry, Timer::Expire { key, version });
                    }
                }
                Timer::KeyLease { id } => {
                    let due = self
                        .key_leases
                        .get(&id)
                        .is_some_and(|l| l.expires_at <= now);
                    if due && self.revoke(id).is_err() {
                        // The journal failed: the remaining keys stay invisible to reads (their
                        // expiry passed); their timers, or the next write, remove them.
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
