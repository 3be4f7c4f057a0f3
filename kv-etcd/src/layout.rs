//! Where kv keys live in etcd's flat keyspace.
//!
//! With root `app`, the kv key `a/b` is the etcd key `app/a/b`; with no root it is the etcd key
//! `a/b` itself (libkv's etcdv3 layout), so the store reads naturally with `etcdctl get
//! --prefix app/` and `etcdctl get a/b`. Locks live beside the data, under `app!kv/key/...`
//! and `app!kv/subtree/...` (no root: `!kv/...`, and the top-level key `!kv` is then
//! reserved): never inside `app/`, so no kv key can collide with them and no data range of a
//! store with a root includes them. etcd keys that are not normalized kv keys (`/x`, `a//b`)
//! are not this store's keys: reads skip them.
//!
//! `layout=slash` keeps the layout kv used before 0.2 for stores without a root: `a/b` is the
//! etcd key `/a/b`.

use kv_core::Result;
use kv_core::backend::LOCK_AREA;

/// Maps kv keys and prefixes to etcd keys and ranges under one root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// What every data key starts with: `root/` (`""` with no root, `/` with `layout=slash`).
    data: String,
    /// What every lock key starts with: `root!kv/`.
    locks: String,
}

/// A half-open etcd key range; `base` bytes of each key in it are the store's data prefix.
pub(crate) struct Range {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub base: usize,
}

/// The end of the range of every key starting with `prefix` ending in `/`: `/` + 1 is `0`.
fn after_slash(prefix_with_slash: &str) -> Vec<u8> {
    let mut end = prefix_with_slash.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last = b'0';
    }
    end
}

impl Layout {
    /// A layout under `root` (a normalized prefix, `""` for none); `slash` puts root-less keys
    /// under `/` (the old layout).
    pub fn new(root: &str, slash: bool) -> Layout {
        Layout {
            data: match (root.is_empty(), slash) {
                (true, false) => String::new(),
                _ => format!("{root}/"),
            },
            locks: format!("{root}{LOCK_AREA}/"),
        }
    }

    /// True if data and locks share the keyspace (no root, no `/`): `!kv` is then reserved.
    fn bare(&self) -> bool {
        self.data.is_empty()
    }

    /// Refuses the keys and prefixes reserved for locks in a store without a root.
    pub fn check_key(&self, key: &str) -> Result<()> {
        if self.bare() {
            kv_core::backend::check_outside_lock_area(key)?;
        }
        Ok(())
    }

    /// The etcd key of kv key `key`.
    pub fn data_key(&self, key: &str) -> String {
        format!("{}{key}", self.data)
    }

    /// The kv key of an etcd data key, if it is one of this store's (a normalized kv key
    /// outside the lock area).
    pub fn kv_key<'a>(&self, etcd_key: &'a [u8]) -> Option<&'a str> {
        let key = std::str::from_utf8(etcd_key)
            .ok()?
            .strip_prefix(self.data.as_str())?;
        if kv_core::normalize_key(key).ok()? != key || self.check_key(key).is_err() {
            return None;
        }
        Some(key)
    }

    /// The range of every kv key strictly below `prefix` (every key, for the root prefix;
    /// with no root that range holds the lock area too, which `kv_key` leaves out).
    pub fn below(&self, prefix: &str) -> Range {
        if prefix.is_empty() && self.bare() {
            // Every etcd key: from `\0` to the end.
            return Range {
                start: vec![0],
                end: vec![0],
                base: 0,
            };
        }
        let start = if prefix.is_empty() {
            self.data.clone()
        } else {
            format!("{}{prefix}/", self.data)
        };
        Range {
            end: after_slash(&start),
            base: start.len(),
            start: start.into_bytes(),
        }
    }

    /// The ranges that hold every kv key strictly below `prefix` and no lock: `below(prefix)`,
    /// or for the whole of a root-less store the keyspace before and after the lock area.
    pub fn data_ranges(&self, prefix: &str) -> Vec<Range> {
        if !(prefix.is_empty() && self.bare()) {
            return vec![self.below(prefix)];
        }
        vec![
            Range {
                start: vec![0],
                end: self.locks.clone().into_bytes(),
                base: 0,
            },
            Range {
                start: after_slash(&self.locks),
                end: vec![0],
                base: 0,
            },
        ]
    }

    /// The etcd key of a lock on `key` of the given scope.
    pub fn lock_key(&self, subtree: bool, key: &str) -> String {
        format!("{}{}/{key}", self.locks, scope(subtree))
    }

    /// The range of the locks of a scope strictly below `key`.
    pub fn locks_below(&self, subtree: bool, key: &str) -> Range {
        let start = format!("{}{}/{key}/", self.locks, scope(subtree));
        Range {
            end: after_slash(&start),
            base: start.len(),
            start: start.into_bytes(),
        }
    }

    /// The range of every lock key of this store (to wait for releases).
    pub fn all_locks(&self) -> Range {
        Range {
            start: self.locks.clone().into_bytes(),
            end: after_slash(&self.locks),
            base: self.locks.len(),
        }
    }
}

fn scope(subtree: bool) -> &'static str {
    if subtree { "subtree" } else { "key" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ranges() {
        let layout = Layout::new("app", false);
        assert_eq!(layout.data_key("a/b"), "app/a/b");
        assert_eq!(layout.kv_key(b"app/a/b"), Some("a/b"));
        assert_eq!(layout.kv_key(b"apple/x"), None);
        assert_eq!(layout.kv_key(b"app!kv/key/x"), None);
        assert_eq!(layout.kv_key(b"app/a//b"), None, "not a kv key");
        assert_eq!(
            layout.kv_key(b"app/!kv/x"),
            Some("!kv/x"),
            "not reserved under a root"
        );
        let below = layout.below("a");
        assert_eq!(
            (&below.start[..], &below.end[..]),
            (&b"app/a/"[..], &b"app/a0"[..])
        );
        let all = layout.below("");
        assert_eq!((&all.start[..], &all.end[..]), (&b"app/"[..], &b"app0"[..]));
        assert_eq!(layout.lock_key(true, "x"), "app!kv/subtree/x");
        assert!(!b"app!kv/key/x".starts_with(&all.start));
        assert_eq!(layout.data_ranges("").len(), 1);
    }

    #[test]
    fn no_root_keys_are_etcd_keys() {
        let bare = Layout::new("", false);
        assert_eq!(bare.data_key("a/b"), "a/b");
        assert_eq!(bare.kv_key(b"a/b"), Some("a/b"));
        assert_eq!(bare.kv_key(b"/a/b"), None, "a leading / is not a kv key");
        assert_eq!(bare.kv_key(b"!kv/key/x"), None);
        assert_eq!(bare.kv_key(b"!kvx"), Some("!kvx"));
        assert!(bare.check_key("!kv/x").is_err() && bare.check_key("!kv").is_err());
        assert!(bare.check_key("!kvx").is_ok());
        assert_eq!(bare.lock_key(false, "x"), "!kv/key/x");
        let below = bare.below("a");
        assert_eq!((&below.start[..], &below.end[..]), (&b"a/"[..], &b"a0"[..]));
        let ranges = bare.data_ranges("");
        assert_eq!(
            ranges
                .iter()
                .map(|r| (&r.start[..], &r.end[..]))
                .collect::<Vec<_>>(),
            [(&b"\0"[..], &b"!kv/"[..]), (&b"!kv0"[..], &b"\0"[..])]
        );
        let slash = Layout::new("", true);
        assert_eq!(slash.data_key("a/b"), "/a/b");
        assert_eq!(slash.kv_key(b"/a/b"), Some("a/b"));
        assert_eq!(slash.below("").start, b"/");
        assert_eq!(slash.lock_key(false, "x"), "!kv/key/x");
        assert!(slash.check_key("!kv/x").is_ok());
    }
}
