//! The values that cross the [`Store`](crate::Store) trait: pairs, events and options.

use std::time::Duration;

use bytes::Bytes;

use crate::grant::Lease;
use crate::key::Key;

/// A stored key, its value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    /// The key.
    pub key: Key,
    /// The value: arbitrary bytes, possibly empty.
    pub value: Bytes,
    /// Strictly increasing for successive writes of the same key; the token for CAS.
    pub version: u64,
}

/// One entry of [`Store::list_children`](crate::Store::list_children): a direct child of the
/// listed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// The child's full key.
    pub key: Key,
    /// True if the child itself holds a value.
    pub has_value: bool,
    /// True if there are keys below the child (it is a "directory").
    pub has_children: bool,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was written (created or updated).
    Put,
    /// The key was deleted or expired.
    Delete,
    /// Not a change: every key that existed when the watch started has been delivered (the
    /// initial state is complete); live changes follow. Sent once, only to watches that ask
    /// with [`WatchOptions::synced`] and do not resume with `since`. Its key is the watched
    /// key or prefix (empty for the whole store), its value empty, its version the highest of
    /// the initial events (0 if there were none).
    Synced,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or Delete.
    pub kind: EventKind,
    /// The key that changed.
    pub key: Key,
    /// The new value; empty for deletes.
    pub value: Bytes,
    /// The version of the write or delete; resume after it with [`WatchOptions::since`].
    pub version: u64,
}

/// Options of [`Store::put_opts`](crate::Store::put_opts) (and its conveniences
/// [`put`](crate::Store::put) and [`atomic_put`](crate::Store::atomic_put)).
///
/// ```
/// use kv_core::{Precondition, PutOptions};
/// use std::time::Duration;
/// let opts = PutOptions::default()
///     .ttl(Duration::from_secs(30))
///     .precondition(Precondition::MustNotExist);
/// assert_eq!(opts.ttl, Some(Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// The key disappears this long after the write (a `Delete` event is emitted). Backends
    /// declare their minimum and granularity in [`crate::Capabilities::ttl`].
    pub ttl: Option<Duration>,
    /// The key lives as long as this lease ([`Store::grant`](crate::Store::grant)); not with
    /// a `ttl`. A later put without it detaches the key.
    pub lease: Option<Lease>,
    /// Write only if this holds, else [`Error::Conflict`](crate::Error::Conflict) and nothing
    /// changes (a compare-and-swap).
    pub precondition: Option<Precondition>,
}

impl PutOptions {
    /// Sets the time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Attaches the key to a lease.
    pub fn lease(mut self, lease: &Lease) -> Self {
        self.lease = Some(lease.clone());
        self
    }

    /// Writes only if `precondition` holds.
    pub fn precondition(mut self, precondition: Precondition) -> Self {
        self.precondition = Some(precondition);
        self
    }
}

/// Options of [`Store::delete_opts`](crate::Store::delete_opts) (and its conveniences
/// [`delete`](crate::Store::delete) and [`atomic_delete`](crate::Store::atomic_delete)).
///
/// ```
/// use kv_core::DeleteOptions;
/// assert_eq!(DeleteOptions::default().version(7).version, Some(7));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteOptions {
    /// Delete only if the key exists with exactly this version, else
    /// [`Error::Conflict`](crate::Error::Conflict) and nothing changes.
    pub version: Option<u64>,
}

impl DeleteOptions {
    /// Deletes only if the key exists with exactly `version`.
    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }
}

/// The condition of a put ([`PutOptions::precondition`], [`Store::atomic_put`](crate::Store::atomic_put)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// The key must not exist.
    MustNotExist,
    /// The key must exist with exactly this version.
    Version(u64),
}

/// Options of [`Store::watch_opts`](crate::Store::watch_opts) (and its conveniences
/// [`watch`](crate::Store::watch) and [`watch_tree`](crate::Store::watch_tree)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Resume after this version: deliver every change with a greater version, without the
    /// initial snapshot. Needs [`crate::Capabilities::watch_history`].
    pub since: Option<u64>,
    /// How many events may wait for the consumer before the watch ends with
    /// [`Error::WatchLagged`](crate::Error::WatchLagged). Writers never wait for watchers.
    pub buffer: usize,
    /// After the initial state, send one [`EventKind::Synced`] event (a config loader knows it
    /// has everything). `since` watches have no initial state and get none.
    pub synced: bool,
    /// Watch every key the given prefix covers instead of one key.
    pub tree: bool,
}

impl WatchOptions {
    /// Default number of buffered events.
    pub const DEFAULT_BUFFER: usize = 1024;

    /// Resume after `version` instead of starting with the current state.
    pub fn since(mut self, version: u64) -> Self {
        self.since = Some(version);
        self
    }

    /// Sets the buffer size (at least 1).
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events;
        self
    }

    /// Marks the end of the initial state with an [`EventKind::Synced`] event.
    pub fn synced(mut self) -> Self {
        self.synced = true;
        self
    }

    /// Watches the subtree of a prefix instead of one key.
    pub fn tree(mut self) -> Self {
        self.tree = true;
        self
    }
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            since: None,
            buffer: Self::DEFAULT_BUFFER,
            synced: false,
            tree: false,
        }
    }
}

/// What a lock excludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LockScope {
    /// Only this key's lock (and `Subtree` locks on its ancestors).
    #[default]
    Key,
    /// This key and every key below it: excludes every lock on the key or below, and is
    /// excluded by a `Subtree` lock on any ancestor.
    Subtree,
}

/// Options of [`Store::new_lock`](crate::Store::new_lock).
///
/// ```
/// use kv_core::{LockOptions, LockScope};
/// use std::time::Duration;
/// let opts = LockOptions::default()
///     .ttl(Duration::from_secs(5))
///     .value(&b"node-1"[..])
///     .scope(LockScope::Subtree);
/// assert_eq!(opts.scope, LockScope::Subtree);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// Lease duration: if the holder stops renewing (crash, stall, lost connection), the lock
    /// is free again after this long. The guard renews it in the background.
    pub ttl: Duration,
    /// Data about the holder (an address, a node name) that others read with
    /// [`Lock::holder`](crate::Lock::holder).
    pub value: bytes::Bytes,
    /// Key or subtree.
    pub scope: LockScope,
}

impl LockOptions {
    /// Default lease duration.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

    /// Sets the lease duration.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the holder's value.
    pub fn value(mut self, value: impl Into<bytes::Bytes>) -> Self {
        self.value = value.into();
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: LockScope) -> Self {
        self.scope = scope;
        self
    }
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: Self::DEFAULT_TTL,
            value: bytes::Bytes::new(),
            scope: LockScope::Key,
        }
    }
}
