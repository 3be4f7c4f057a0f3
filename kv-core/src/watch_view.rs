//! What a watch has delivered so far, for backends that learn changes by re-reading state
//! (Consul's blocking queries, ZooKeeper's watches) rather than from a change log: it turns
//! fresh reads into Put and Delete events and ends TTL keys at their expiry time.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::key::Key;
use crate::types::{EventKind, WatchEvent};

/// The state of one key as read from the backend.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The value.
    pub value: Bytes,
    /// The version of the write that produced it.
    pub version: u64,
    /// When its TTL ends, in Unix milliseconds; `None` for no TTL.
    pub expires_ms: Option<u64>,
}

/// The keys a watch has reported as present, with their versions and expiry times.
///
/// ```
/// use kv_core::backend::{Observed, WatchView};
/// use kv_core::{EventKind, Key};
/// let mut view = WatchView::default();
/// let key = Key::parse("k").unwrap();
/// let put = view.update(key.clone(), Some(Observed { value: "v".into(), version: 5, expires_ms: Some(1_000) }), None);
/// assert_eq!(put.unwrap().kind, EventKind::Put);
/// assert!(view.update(key.clone(), Some(Observed { value: "v".into(), version: 5, expires_ms: Some(1_000) }), None).is_none());
/// assert_eq!(view.next_expiry(), Some(1_000));
/// let expired = view.expire(1_000, 7);
/// assert_eq!((expired[0].kind, expired[0].version), (EventKind::Delete, 7));
/// ```
#[derive(Debug, Default)]
pub struct WatchView {
    seen: BTreeMap<Key, (u64, Option<u64>)>,
}

impl WatchView {
    /// Takes in the current state of one key (`None`: absent). Returns the event to deliver,
    /// if any: a Put for a version newer than the last one delivered, a Delete (at
    /// `delete_version`, or the last version + 1 when the backend does not say) for a key that
    /// was present.
    pub fn update(
        &mut self,
        key: Key,
        now: Option<Observed>,
        delete_version: Option<u64>,
    ) -> Option<WatchEvent> {
        match now {
            Some(observed) => {
                let newer = self
                    .seen
                    .get(&key)
                    .is_none_or(|(version, _)| observed.version > *version);
                if !newer {
                    return None;
                }
                self.seen
                    .insert(key.clone(), (observed.version, observed.expires_ms));
                Some(WatchEvent {
                    kind: EventKind::Put,
                    key,
                    value: observed.value,
                    version: observed.version,
                })
            }
            None => {
                let (last, _) = self.seen.remove(&key)?;
                Some(delete(key, delete_version.unwrap_or(0).max(last + 1)))
            }
        }
    }

    /// Takes in the complete current state of everything the watch covers. Returns the events
    /// that lead from the last state to this one, in version order; keys that disappeared are
    /// deleted at `delete_version` (at least their last version + 1).
    pub fn replace_all(
        &mut self,
        current: BTreeMap<Key, Observed>,
        delete_version: u64,
    ) -> Vec<WatchEvent> {
        let gone: Vec<Key> = self
            .seen
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        let mut events: Vec<WatchEvent> = gone
            .into_iter()
            .filter_map(|key| self.update(key, None, Some(delete_version)))
            .collect();
        events.extend(
            current
                .into_iter()
                .filter_map(|(key, observed)| self.update(key, Some(observed), None)),
        );
        events.sort_by_key(|e| e.version);
        events
    }

    /// Delete events for the keys whose TTL has passed by `now_ms`, at `delete_version` (at
    /// least their last version + 1).
    pub fn expire(&mut self, now_ms: u64, delete_version: u64) -> Vec<WatchEvent> {
        let gone: Vec<Key> = self
            .seen
            .iter()
            .filter(|(_, (_, expires))| expires.is_some_and(|at| at <= now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        let mut events: Vec<WatchEvent> = gone
            .into_iter()
            .filter_map(|key| self.update(key, None, Some(delete_version)))
            .collect();
        events.sort_by_key(|e| e.version);
        events
    }

    /// The earliest expiry time among the keys in view.
    pub fn next_expiry(&self) -> Option<u64> {
        self.seen.values().filter_map(|(_, at)| *at).min()
    }

    /// True if `key` is in view (reported present).
    pub fn contains(&self, key: &Key) -> bool {
        self.seen.contains_key(key)
    }
}

fn delete(key: Key, version: u64) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        key,
        value: Bytes::new(),
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(version: u64) -> Observed {
        Observed {
            value: Bytes::from(format!("v{version}")),
            version,
            expires_ms: None,
        }
    }

    #[test]
    fn replace_all_diffs_in_version_order() {
        let mut view = WatchView::default();
        let (a, b, c) = (
            Key::parse("a").unwrap(),
            Key::parse("b").unwrap(),
            Key::parse("c").unwrap(),
        );
        let first = view.replace_all(
            [(a.clone(), observed(3)), (b.clone(), observed(2))].into(),
            3,
        );
        assert_eq!(
            first.iter().map(|e| e.version).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let second = view.replace_all(
            [(a.clone(), observed(3)), (c.clone(), observed(9))].into(),
            10,
        );
        assert_eq!(
            second
                .iter()
                .map(|e| (e.kind, e.key.as_str(), e.version))
                .collect::<Vec<_>>(),
            vec![(EventKind::Put, "c", 9), (EventKind::Delete, "b", 10)]
        );
        assert!(view.update(a, Some(observed(2)), None).is_none(), "older");
    }
}
