//! Multi-key transactions ([`Store::txn`](crate::Store::txn)): conditions on several keys, then
//! puts and deletes, all or nothing.

use std::collections::HashSet;

use bytes::Bytes;

use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::key::Key;

/// What a transaction requires of one key's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The key does not exist (never put, deleted or expired).
    Missing,
    /// The key exists, whatever its value.
    Exists,
    /// The key exists with exactly this version.
    Version(u64),
    /// The key exists with exactly this value.
    Value(Bytes),
}

impl Condition {
    /// Checks the condition against a key's current state (`None`: missing; else its value and
    /// version). `Err` says what was expected and found, for [`Error::Conflict`].
    pub fn check(&self, current: Option<(&[u8], u64)>) -> Result<(), String> {
        match (self, current) {
            (Condition::Missing, None) => Ok(()),
            (Condition::Missing, Some((_, version))) => Err(format!(
                "the key exists (version {version}), expected it missing"
            )),
            (_, None) => Err("the key does not exist".into()),
            (Condition::Version(want), Some((_, version))) if *want != version => {
                Err(format!("the version is {version}, expected {want}"))
            }
            (Condition::Value(want), Some((value, version))) if want.as_ref() != value => Err(
                format!("the value (version {version}) differs from the expected one"),
            ),
            _ => Ok(()),
        }
    }
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Writes the value (no TTL).
    Put {
        /// The key.
        key: Key,
        /// The new value.
        value: Bytes,
    },
    /// Deletes the key; a missing key is left alone (no event).
    Delete {
        /// The key.
        key: Key,
    },
}

impl TxnOp {
    /// The key this operation writes.
    pub fn key(&self) -> &Key {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
        }
    }
}

/// What one operation of a committed transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOpResult {
    /// A put wrote this version.
    Put {
        /// The new version.
        version: u64,
    },
    /// A delete removed the key (`existed`) or found it missing (a no-op, no event).
    Delete {
        /// Whether the key existed.
        existed: bool,
    },
}

impl TxnOpResult {
    /// The version a put wrote; `None` for a delete.
    pub fn version(&self) -> Option<u64> {
        match self {
            TxnOpResult::Put { version } => Some(*version),
            TxnOpResult::Delete { .. } => None,
        }
    }
}

/// A transaction: conditions on any keys, then puts and deletes that are applied all together
/// if every condition holds, else not at all.
///
/// ```
/// use kv_core::{Condition, Txn};
/// let txn = Txn::new()
///     .when("jobs/42/owner", Condition::Missing)
///     .when("jobs/42/state", Condition::Value("queued".into()))
///     .put("jobs/42/owner", "worker-7")
///     .put("jobs/42/state", "running")
///     .delete("queue/42");
/// assert_eq!(txn.len(), 5);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    conditions: Vec<(String, Condition)>,
    ops: Vec<(String, Option<Bytes>)>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds a condition on `key`.
    pub fn when(mut self, key: impl Into<String>, condition: Condition) -> Txn {
        self.conditions.push((key.into(), condition));
        self
    }

    /// Adds a put of `value` under `key`.
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Txn {
        self.ops.push((key.into(), Some(value.into())));
        self
    }

    /// Adds a delete of `key`.
    pub fn delete(mut self, key: impl Into<String>) -> Txn {
        self.ops.push((key.into(), None));
        self
    }

    /// Conditions plus operations: what counts against
    /// [`Capabilities::max_txn_ops`].
    pub fn len(&self) -> usize {
        self.conditions.len() + self.ops.len()
    }

    /// True if the transaction has neither conditions nor operations.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same transaction with every key replaced by `f(key)` (for wrappers such as
    /// [`PrefixStore`](crate::PrefixStore)).
    pub(crate) fn map_keys(self, f: impl Fn(&str) -> Result<String>) -> Result<Txn> {
        Ok(Txn {
            conditions: self
                .conditions
                .into_iter()
                .map(|(key, condition)| Ok((f(&key)?, condition)))
                .collect::<Result<_>>()?,
            ops: self
                .ops
                .into_iter()
                .map(|(key, value)| Ok((f(&key)?, value)))
                .collect::<Result<_>>()?,
        })
    }

    /// The first key the transaction names, for traces.
    pub(crate) fn first_key(&self) -> &str {
        let condition = self.conditions.first().map(|(k, _)| k);
        condition
            .or(self.ops.first().map(|(k, _)| k))
            .map_or("", String::as_str)
    }

    /// Validates the transaction for a backend before anything is sent: transactions
    /// supported, at most [`Capabilities::max_txn_ops`] conditions and operations, every key
    /// valid, no key written twice, the values together within
    /// [`Capabilities::max_value_bytes`] (one request carries them all).
    pub fn check(self, capabilities: &Capabilities) -> Result<CheckedTxn> {
        if capabilities.max_txn_ops == 0 {
            return Err(capabilities.unsupported("transactions"));
        }
        if self.len() > capabilities.max_txn_ops {
            return Err(Error::invalid_argument(format!(
                "the transaction has {} conditions and operations; {} takes at most {}",
                self.len(),
                capabilities.backend,
                capabilities.max_txn_ops
            )));
        }
        let key = |input: &str| -> Result<Key> {
            let key = Key::parse(input)?;
            capabilities.check_key(key.as_str())?;
            Ok(key)
        };
        let conditions = self
            .conditions
            .into_iter()
            .map(|(k, condition)| Ok((key(&k)?, condition)))
            .collect::<Result<Vec<_>>>()?;
        let mut written = HashSet::new();
        let mut ops = Vec::with_capacity(self.ops.len());
        let mut total = 0usize;
        for (k, value) in self.ops {
            let key = key(&k)?;
            if !written.insert(key.clone()) {
                return Err(Error::invalid_argument(format!(
                    "the transaction writes {key} twice; write each key at most once"
                )));
            }
            ops.push(match value {
                Some(value) => {
                    total = total.saturating_add(value.len());
                    capabilities.check_value(total)?;
                    TxnOp::Put { key, value }
                }
                None => TxnOp::Delete { key },
            });
        }
        Ok(CheckedTxn { conditions, ops })
    }
}

/// A transaction validated by [`Txn::check`]: normalized keys, within the backend's limits.
/// What backends implement [`Store::txn`](crate::Store::txn) with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckedTxn {
    /// The conditions, in the order given.
    pub conditions: Vec<(Key, Condition)>,
    /// The writes, in the order given; each key at most once.
    pub ops: Vec<TxnOp>,
}

impl CheckedTxn {
    /// Every key the transaction names (conditions, then writes), each once, in first-seen
    /// order: what a backend that evaluates conditions itself reads first.
    pub fn keys(&self) -> Vec<&Key> {
        let mut seen = HashSet::new();
        self.conditions
            .iter()
            .map(|(key, _)| key)
            .chain(self.ops.iter().map(TxnOp::key))
            .filter(|key| seen.insert(*key))
            .collect()
    }

    /// Checks every condition against the current state `read` gives for a key (`None`:
    /// missing); the first that fails is the [`Error::Conflict`].
    pub fn check_conditions<'a>(
        &self,
        mut read: impl FnMut(&Key) -> Option<(&'a [u8], u64)>,
    ) -> Result<()> {
        for (key, condition) in &self.conditions {
            condition
                .check(read(key))
                .map_err(|reason| Error::conflict(key, reason))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(max_txn_ops: usize) -> Capabilities {
        let mut caps = Capabilities::full("test", 8);
        caps.max_txn_ops = max_txn_ops;
        caps
    }

    #[test]
    fn conditions_compare_state() {
        let v = Some((&b"x"[..], 7));
        assert!(Condition::Missing.check(None).is_ok());
        assert!(Condition::Missing.check(v).is_err());
        assert!(Condition::Exists.check(v).is_ok());
        assert!(Condition::Exists.check(None).is_err());
        assert!(Condition::Version(7).check(v).is_ok());
        assert!(Condition::Version(6).check(v).is_err());
        assert!(Condition::Version(7).check(None).is_err());
        assert!(Condition::Value("x".into()).check(v).is_ok());
        assert!(Condition::Value("y".into()).check(v).is_err());
        assert!(Condition::Value("".into()).check(None).is_err());
    }

    #[test]
    fn check_validates_before_sending() {
        let txn = Txn::new()
            .when("/a/", Condition::Exists)
            .put("b", "v")
            .delete("c");
        let checked = txn.clone().check(&caps(3)).unwrap();
        assert_eq!(checked.conditions[0].0.as_str(), "a");
        assert_eq!(checked.keys().len(), 3);
        assert!(matches!(
            txn.clone().check(&caps(2)),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            txn.check(&caps(0)),
            Err(Error::Unsupported {
                capability: "transactions",
                ..
            })
        ));
        let twice = Txn::new().put("a", "1").delete("/a");
        assert!(matches!(
            twice.check(&caps(9)),
            Err(Error::InvalidArgument { .. })
        ));
        let big = Txn::new().put("a", "123456789");
        assert!(matches!(
            big.check(&caps(9)),
            Err(Error::ValueTooLarge { .. })
        ));
        let together = Txn::new().put("a", "12345").put("b", "12345");
        assert!(matches!(
            together.check(&caps(9)),
            Err(Error::ValueTooLarge { size: 10, max: 8 })
        ));
        let bad = Txn::new().when("a//b", Condition::Missing);
        assert!(matches!(bad.check(&caps(9)), Err(Error::InvalidKey { .. })));
    }
}
