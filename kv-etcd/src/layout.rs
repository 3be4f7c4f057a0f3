//! Where kv keys live in etcd's flat keyspace.
//!
//! With root `app`, the kv key `a/b` is the etcd key `app/a/b` (with no root: `/a/b`), so the
//! store is readable with `etcdctl get --prefix app/`. Locks live beside the data, under
//! `app!kv/key/...` and `app!kv/subtree/...`: never inside `app/`, so no kv key can collide with
//! them and no data range includes them.

/// Maps kv keys and prefixes to etcd keys and ranges under one root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: String,
}

/// A half-open etcd key range.
pub(crate) struct Range {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
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
    /// A layout under `root` (a normalized prefix, `""` for none).
    pub fn new(root: &str) -> Layout {
        Layout {
            root: root.to_owned(),
        }
    }

    /// The etcd key of kv key `key`.
    pub fn data_key(&self, key: &str) -> String {
        format!("{}/{key}", self.root)
    }

    /// The kv key of an etcd data key, if it is one of this store's.
    pub fn kv_key<'a>(&self, etcd_key: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(etcd_key)
            .ok()?
            .strip_prefix(self.root.as_str())?
            .strip_prefix('/')
    }

    /// The range of every kv key strictly below `prefix` (every key, for the root prefix).
    pub fn below(&self, prefix: &str) -> Range {
        let start = if prefix.is_empty() {
            format!("{}/", self.root)
        } else {
            format!("{}/{prefix}/", self.root)
        };
        Range {
            end: after_slash(&start),
            start: start.into_bytes(),
        }
    }

    /// The etcd key of a lock on `key` of the given scope.
    pub fn lock_key(&self, subtree: bool, key: &str) -> String {
        format!("{}!kv/{}/{key}", self.root, scope(subtree))
    }

    /// The range of the locks of a scope strictly below `key`.
    pub fn locks_below(&self, subtree: bool, key: &str) -> Range {
        let start = format!("{}!kv/{}/{key}/", self.root, scope(subtree));
        Range {
            end: after_slash(&start),
            start: start.into_bytes(),
        }
    }

    /// The range of every lock key of this store (to wait for releases).
    pub fn all_locks(&self) -> Range {
        let start = format!("{}!kv/", self.root);
        Range {
            end: after_slash(&start),
            start: start.into_bytes(),
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
        let layout = Layout::new("app");
        assert_eq!(layout.data_key("a/b"), "app/a/b");
        assert_eq!(layout.kv_key(b"app/a/b"), Some("a/b"));
        assert_eq!(layout.kv_key(b"apple/x"), None);
        assert_eq!(layout.kv_key(b"app!kv/key/x"), None);
        let below = layout.below("a");
        assert_eq!(
            (&below.start[..], &below.end[..]),
            (&b"app/a/"[..], &b"app/a0"[..])
        );
        let all = layout.below("");
        assert_eq!((&all.start[..], &all.end[..]), (&b"app/"[..], &b"app0"[..]));
        assert_eq!(Layout::new("").data_key("k"), "/k");
        assert_eq!(layout.lock_key(true, "x"), "app!kv/subtree/x");
        assert!(!b"app!kv/key/x".starts_with(&all.start));
    }
}
