//! Where kv keys live in Consul's flat keyspace.
//!
//! With root `app`, the kv key `a/b` is the Consul key `app/a/b` (with no root: `a/b`), so the
//! store reads naturally in Consul's UI and `consul kv get -recurse app/`. Locks live beside the
//! data under `app!kv/key/...` and `app!kv/subtree/...` (no root: `!kv/...`, and the top-level
//! key `!kv` is then reserved), never inside `app/`.
//!
//! A key written with a TTL carries its expiry time (Unix milliseconds) in Consul's `Flags`;
//! readers treat it as gone from that moment, before Consul's session reaper deletes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kv_core::{Error, Result};

/// The lock area's name beside the root.
const LOCKS: &str = "!kv";

/// Maps kv keys and prefixes to Consul keys under one root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: String,
}

impl Layout {
    /// A layout under `root` (a normalized prefix, `""` for none).
    pub fn new(root: &str) -> Layout {
        Layout {
            root: root.to_owned(),
        }
    }

    /// Refuses the key reserved for locks when there is no root.
    pub fn check_key(&self, key: &str) -> Result<()> {
        if self.root.is_empty() && (key == LOCKS || key.starts_with("!kv/")) {
            return Err(Error::InvalidKey {
                key: key.chars().take(64).collect(),
                reason: "`!kv` is reserved for locks in a Consul store without a root",
            });
        }
        Ok(())
    }

    /// The Consul key of kv key `key` (or of a prefix; `""` is the root itself).
    pub fn data_key(&self, key: &str) -> String {
        match (self.root.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => self.root.clone(),
            (false, false) => format!("{}/{key}", self.root),
        }
    }

    /// The raw Consul prefix of every key strictly below `prefix` (`""` = the whole root).
    pub fn below(&self, prefix: &str) -> String {
        let key = self.data_key(prefix);
        if key.is_empty() { key } else { key + "/" }
    }

    /// The kv key of a Consul key, if it is a data key of this store that the prefix covers.
    pub fn kv_key<'a>(&self, consul_key: &'a str, prefix: &str) -> Option<&'a str> {
        let key = if self.root.is_empty() {
            consul_key
        } else {
            consul_key
                .strip_prefix(self.root.as_str())?
                .strip_prefix('/')?
        };
        if self.root.is_empty() && (key == LOCKS || key.starts_with("!kv/")) {
            return None;
        }
        if !kv_core::covers(prefix, key) || kv_core::normalize_key(key).ok()? != key {
            return None;
        }
        Some(key)
    }

    /// The Consul key of a lock on `key` of the given scope.
    pub fn lock_key(&self, subtree: bool, key: &str) -> String {
        format!("{}{LOCKS}/{}/{key}", self.root, scope(subtree))
    }

    /// The raw prefix of the locks of a scope strictly below `key`.
    pub fn locks_below(&self, subtree: bool, key: &str) -> String {
        format!("{}{LOCKS}/{}/{key}/", self.root, scope(subtree))
    }

    /// The raw prefix of every lock of this store (to wait for releases).
    pub fn all_locks(&self) -> String {
        format!("{}{LOCKS}/", self.root)
    }
}

fn scope(subtree: bool) -> &'static str {
    if subtree { "subtree" } else { "key" }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The `Flags` of a write: its expiry time, or 0 for none.
pub(crate) fn expiry_flags(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| {
        now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
    })
}

/// True if an entry with these `Flags` has expired by `now` (milliseconds).
pub(crate) fn expired(flags: u64, now: u64) -> bool {
    flags != 0 && flags <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes() {
        let layout = Layout::new("app");
        assert_eq!(layout.data_key("a/b"), "app/a/b");
        assert_eq!(layout.below(""), "app/");
        assert_eq!(layout.below("a"), "app/a/");
        assert_eq!(layout.kv_key("app/a/b", ""), Some("a/b"));
        assert_eq!(layout.kv_key("app/a/b", "a"), Some("a/b"));
        assert_eq!(layout.kv_key("app/ab", "a"), None);
        assert_eq!(layout.kv_key("apple/x", ""), None);
        assert_eq!(layout.kv_key("app!kv/key/x", ""), None);
        assert_eq!(layout.kv_key("app/a//b", ""), None, "not a kv key");
        assert_eq!(layout.lock_key(true, "x"), "app!kv/subtree/x");
        let bare = Layout::new("");
        assert_eq!(bare.data_key("k"), "k");
        assert_eq!(bare.below(""), "");
        assert_eq!(bare.kv_key("!kv/key/x", ""), None);
        assert!(bare.check_key("!kv/x").is_err());
        assert!(layout.check_key("!kv/x").is_ok());
        assert!(expired(5, 5) && !expired(0, 5) && !expired(6, 5));
    }
}
