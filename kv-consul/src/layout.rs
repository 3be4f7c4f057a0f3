//! Where kv keys live in Consul's flat keyspace.
//!
//! With root `app`, the kv key `a/b` is the Consul key `app/a/b` (with no root: `a/b`), so the
//! store reads naturally in Consul's UI and `consul kv get -recurse app/`. Locks live beside the
//! data under `app!kv/key/...` and `app!kv/subtree/...` (no root: `!kv/...`, and the top-level
//! key `!kv` is then reserved), never inside `app/`.
//!
//! A key written with a TTL is bound to a kv session and carries its expiry time (Unix
//! milliseconds) in Consul's `Flags`, tagged with `kv` in the top 16 bits; readers treat it as
//! gone from that moment, before Consul's session reaper deletes it. Any other key is a plain
//! key whatever its `Flags` (`consul kv put -flags=42 app/f v` is the kv key `f`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kv_core::Result;

use crate::api::Entry;

/// The lock area's name beside the root.
const LOCKS: &str = kv_core::backend::LOCK_AREA;

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
        if self.root.is_empty() {
            kv_core::backend::check_outside_lock_area(key)?;
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
        if self.root.is_empty() && kv_core::covers(LOCKS, key) {
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

/// The top 16 bits of the `Flags` of a kv TTL key: `kv`.
const EXPIRY_TAG: u64 = 0x6b76 << 48;
/// The bits of those `Flags` that hold the expiry time.
const EXPIRY_MASK: u64 = (1 << 48) - 1;

/// The `Flags` of a write: its tagged expiry time, or 0 for none.
pub(crate) fn expiry_flags(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| {
        let at = now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        EXPIRY_TAG | at.min(EXPIRY_MASK)
    })
}

impl Entry {
    /// When a kv TTL key expires (Unix milliseconds): only a key bound to a session whose
    /// `Flags` carry kv's tag has an expiry.
    pub(crate) fn expiry(&self) -> Option<u64> {
        (self.session.is_some() && self.flags & !EXPIRY_MASK == EXPIRY_TAG)
            .then_some(self.flags & EXPIRY_MASK)
    }

    /// True if this is a kv TTL key whose time has passed by `now` (milliseconds).
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expiry().is_some_and(|at| at <= now)
    }
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
    }

    #[test]
    fn only_tagged_session_keys_expire() {
        let entry = |flags: u64, session: Option<&str>| Entry {
            key: "k".into(),
            flags,
            value: Default::default(),
            modify_index: 1,
            session: session.map(str::to_owned),
        };
        let flags = expiry_flags(Some(Duration::from_secs(1)));
        let at = entry(flags, Some("s")).expiry().unwrap();
        assert!(at.abs_diff(now_ms() + 1000) < 1000);
        assert!(entry(flags, Some("s")).expired(at) && !entry(flags, Some("s")).expired(at - 1));
        assert!(
            !entry(flags, None).expired(u64::MAX),
            "no session: a plain key"
        );
        assert!(
            !entry(42, Some("s")).expired(u64::MAX),
            "foreign flags: a plain key"
        );
        assert!(!entry(42, None).expired(u64::MAX));
        assert_eq!(expiry_flags(None), 0);
    }
}
