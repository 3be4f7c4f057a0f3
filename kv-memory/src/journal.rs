//! Durability under a namespace: a [`Journal`] records every change before it is applied, and
//! a [`Recovered`] state seeds a namespace at open. This is how `kv-sled` makes the reference
//! semantics persistent without reimplementing them.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use kv_core::{Key, Result};

/// Durable storage of a namespace's values. Each method is called under the namespace's write
/// lock, before the change is applied in memory; an error aborts the change, which is then
/// returned to the caller with nothing changed.
pub trait Journal: Send + Sync + 'static {
    /// Records that `key` now holds `value` at `version` (the namespace's new revision),
    /// expiring at `expires_at` if set.
    fn put(
        &self,
        key: &Key,
        value: &[u8],
        version: u64,
        expires_at: Option<SystemTime>,
    ) -> Result<()>;

    /// Records that `keys` were removed (deleted or expired) at revision `revision`.
    fn delete(&self, keys: &[Key], revision: u64) -> Result<()>;

    /// Records a transaction's writes, all at `revision`, as one atomic change: `puts` (no
    /// expiry) and the removal of `deletes`.
    fn commit(&self, puts: &[(&Key, &[u8])], deletes: &[Key], revision: u64) -> Result<()>;

    /// Records that the revision advanced without a data change (a lock grant's fencing
    /// token), so that versions and tokens stay monotonic across restarts.
    fn advance(&self, revision: u64) -> Result<()>;

    /// Makes everything recorded so far durable (called by `close`).
    fn flush(&self) -> Result<()>;
}

/// One value read back from durable storage.
#[derive(Debug, Clone)]
pub struct RecoveredEntry {
    /// The key.
    pub key: Key,
    /// The value.
    pub value: Bytes,
    /// Its version.
    pub version: u64,
    /// When it expires, if it has a TTL (possibly already past).
    pub expires_at: Option<SystemTime>,
}

/// The state a durable namespace starts from.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The last revision handed out before the restart.
    pub revision: u64,
    /// Every stored value.
    pub entries: Vec<RecoveredEntry>,
}

/// A monotonic deadline as wall-clock time, for storage.
pub(crate) fn to_system_time(at: Instant) -> SystemTime {
    let now = Instant::now();
    let wall = SystemTime::now();
    match at.checked_duration_since(now) {
        Some(ahead) => wall + ahead,
        None => wall - now.duration_since(at),
    }
}

/// A stored wall-clock deadline as a monotonic one (now, if it has passed).
pub(crate) fn to_instant(at: SystemTime) -> Instant {
    let ahead = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + ahead
}
