//! What a backend supports and its limits, declared once and checked by the conformance suite.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::key::MAX_KEY_BYTES;

/// TTL support of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlSupport {
    /// Shortest TTL accepted; shorter ones fail with
    /// [`Error::InvalidArgument`] and write nothing.
    pub min: Duration,
    /// TTLs are rounded up to a multiple of this.
    pub granularity: Duration,
}

/// What a backend supports and its limits.
///
/// A missing capability makes the calls that need it fail with [`Error::Unsupported`] naming
/// it; the conformance suite checks exactly that for every capability a backend lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend's name, as used in error messages (`"memory"`, `"etcd"`, ...).
    pub backend: &'static str,
    /// `WatchOptions::since` works: the backend keeps a history of changes.
    pub watch_history: bool,
    /// A watch may skip intermediate versions of a key (the latest state is always delivered).
    pub watch_coalesces: bool,
    /// Per-write TTL, with its limits; `None` if unsupported.
    pub ttl: Option<TtlSupport>,
    /// Locks with leases and fencing tokens.
    pub locks: bool,
    /// Leases shared by keys ([`Store::grant`](crate::Store::grant),
    /// [`PutOptions::lease`](crate::PutOptions::lease)).
    pub leases: bool,
    /// A lease can be taken up by ID from another handle or process
    /// ([`Store::attach_lease`](crate::Store::attach_lease)).
    pub attach_leases: bool,
    /// [`LockScope::Subtree`](crate::LockScope::Subtree) locks.
    pub subtree_locks: bool,
    /// Locks exclude only holders in the same process (an embedded store).
    pub locks_process_local: bool,
    /// `delete_tree` removes the whole subtree atomically (no reader sees half of it).
    pub atomic_delete_tree: bool,
    /// `list` reads every key at one point in time (a list that shows a write never misses
    /// one acknowledged before it began); false where a list is read key by key or page by
    /// page.
    pub snapshot_lists: bool,
    /// Longest key in bytes (never more than [`MAX_KEY_BYTES`]).
    pub max_key_bytes: usize,
    /// Largest value in bytes; larger values fail with [`Error::ValueTooLarge`].
    pub max_value_bytes: usize,
    /// Most conditions plus operations in one [`Store::txn`](crate::Store::txn); `0` if the
    /// backend has no transactions (`Unsupported("transactions")`).
    pub max_txn_ops: usize,
}

impl Capabilities {
    /// Everything supported, with the given value limit: the reference backend's set.
    pub fn full(backend: &'static str, max_value_bytes: usize) -> Capabilities {
        Capabilities {
            backend,
            watch_history: true,
            watch_coalesces: false,
            ttl: Some(TtlSupport {
                min: Duration::from_millis(1),
                granularity: Duration::from_millis(1),
            }),
            locks: true,
            leases: true,
            attach_leases: true,
            subtree_locks: true,
            locks_process_local: false,
            atomic_delete_tree: true,
            snapshot_lists: true,
            max_key_bytes: MAX_KEY_BYTES,
            max_value_bytes,
            max_txn_ops: usize::MAX,
        }
    }

    /// Fails with [`Error::ValueTooLarge`] if `len` exceeds the value limit.
    pub fn check_value(&self, len: usize) -> Result<()> {
        if len > self.max_value_bytes {
            return Err(Error::ValueTooLarge {
                size: len,
                max: self.max_value_bytes,
            });
        }
        Ok(())
    }

    /// Checks a requested TTL and returns it rounded up to the granularity.
    pub fn check_ttl(&self, ttl: Duration) -> Result<Duration> {
        let support = self.ttl.ok_or_else(|| self.unsupported("ttl"))?;
        if ttl < support.min {
            return Err(Error::invalid_argument(format!(
                "TTL {ttl:?} is below {}'s minimum of {:?}",
                self.backend, support.min
            )));
        }
        let step = support.granularity.as_nanos().max(1);
        let rounded = ttl.as_nanos().div_ceil(step) * step;
        Ok(Duration::from_nanos(
            u64::try_from(rounded).unwrap_or(u64::MAX),
        ))
    }

    /// Checks the options of a put: its TTL (returned rounded, as [`Capabilities::check_ttl`])
    /// and its lease (`Unsupported("leases")` without leases; not with a TTL).
    pub fn check_put(&self, options: &crate::PutOptions) -> Result<Option<Duration>> {
        if options.lease.is_some() {
            if !self.leases {
                return Err(self.unsupported("leases"));
            }
            if options.ttl.is_some() {
                return Err(Error::invalid_argument(
                    "a put takes a TTL or a lease, not both",
                ));
            }
        }
        options.ttl.map(|ttl| self.check_ttl(ttl)).transpose()
    }

    /// Checks a lease TTL for [`Store::grant`](crate::Store::grant): `Unsupported("leases")`
    /// without leases, else as a put's TTL ([`Capabilities::check_ttl`]).
    pub fn check_grant(&self, ttl: Duration) -> Result<Duration> {
        if !self.leases {
            return Err(self.unsupported("leases"));
        }
        self.check_ttl(ttl)
    }

    /// Checks that [`Store::attach_lease`](crate::Store::attach_lease) is possible:
    /// `Unsupported("leases")` without leases, `Unsupported("attach_leases")` without that.
    pub fn check_attach(&self) -> Result<()> {
        if !self.leases {
            return Err(self.unsupported("leases"));
        }
        if !self.attach_leases {
            return Err(self.unsupported("attach_leases"));
        }
        Ok(())
    }

    /// Checks a key against this backend's key limit (stricter than [`MAX_KEY_BYTES`] on some).
    pub fn check_key(&self, key: &str) -> Result<()> {
        if key.len() > self.max_key_bytes {
            return Err(Error::InvalidKey {
                key: key.chars().take(64).collect(),
                reason: "longer than this backend's key limit",
            });
        }
        Ok(())
    }

    /// Checks watch options: a buffer of at least one event, and `since` only with
    /// [`Capabilities::watch_history`].
    pub fn check_watch(&self, options: &crate::WatchOptions) -> Result<()> {
        if options.buffer == 0 {
            return Err(Error::invalid_argument(
                "the watch buffer must hold at least 1 event",
            ));
        }
        if options.since.is_some() && !self.watch_history {
            return Err(self.unsupported("watch_history"));
        }
        Ok(())
    }

    /// The [`Error::Unsupported`] for `capability` on this backend.
    pub fn unsupported(&self, capability: &'static str) -> Error {
        Error::Unsupported {
            backend: self.backend,
            capability,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_and_rejects_short() {
        let mut caps = Capabilities::full("test", 10);
        caps.ttl = Some(TtlSupport {
            min: Duration::from_secs(1),
            granularity: Duration::from_secs(1),
        });
        assert_eq!(
            caps.check_ttl(Duration::from_millis(1500)).unwrap(),
            Duration::from_secs(2)
        );
        assert!(matches!(
            caps.check_ttl(Duration::from_millis(500)),
            Err(Error::InvalidArgument { .. })
        ));
        caps.ttl = None;
        assert!(matches!(
            caps.check_ttl(Duration::from_secs(5)),
            Err(Error::Unsupported {
                capability: "ttl",
                ..
            })
        ));
    }

    #[test]
    fn value_limit() {
        let caps = Capabilities::full("test", 10);
        assert!(caps.check_value(10).is_ok());
        assert!(matches!(
            caps.check_value(11),
            Err(Error::ValueTooLarge { size: 11, max: 10 })
        ));
    }
}
