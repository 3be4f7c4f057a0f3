//! Where kv keys live in ZooKeeper's tree.
//!
//! Under the base path (`/kv` unless the URL names one), the kv key `a/b` is the directory
//! node `/kv/a/b` and its value, if it has one, is that directory's child `=` (a persistent
//! node) or `=t` (a TTL node): `/kv/a/b/=`. So a key can hold a value and have keys below it,
//! a parent created for a key below is never mistaken for a key (it has no value child), a
//! value can carry its own TTL (a TTL node never has children, so ZooKeeper reaps it), and
//! directories are container nodes that ZooKeeper removes once empty. A segment that starts
//! with `=` is stored with one more `=` in front, so no directory is ever named `=` or `=t`.
//!
//! A value is rewritten in place (`setData`, whose data version then guards CAS); switching
//! between permanent and TTL replaces one value node by the other in one `multi`.
//!
//! A key's directory also holds its *epoch* node `=e` (empty, persistent), whose data version
//! counts the value nodes created there: every `multi` that creates a value node creates or
//! bumps it, and every conditional write checks it. A value node deleted and created again
//! starts again at data version 0, so its own version cannot tell a CAS that the value it read
//! is gone (the ABA the robustness runs found); the epoch can, as long as it outlives every
//! write in flight that read it. It is removed only by the reclaimer (the `reclaim` module),
//! after it has seen the key without a value and the epoch unchanged for longer than any
//! session can hold a write (`reclaim_after`).
//!
//! The native layout (`layout=native`) keeps a key's value in the data of its own node
//! (`/kv/a/b`), raw, where `zkCli get` looks. ZooKeeper does not show clients a node's kind
//! (a container's or TTL node's `ephemeralOwner` reads as 0), so a node is a key if it holds
//! data or was ever written (data version above 0): kv creates parents as empty persistent
//! nodes and every key with a `setData` in the creating `multi`. A key whose value is deleted
//! while it has children keeps its node, emptied, and is marked hollow beside the base
//! (`/kv!kv-hollow/<key>`, holding the node's `czxid:version`): an emptied node whose marker
//! matches is no key, and any later write to it (kv's or another tool's) changes its version
//! and makes it one again. TTLs are not supported there: readers could not tell when a TTL
//! node expires.
//!
//! Locks live beside the base, in `/kv!kv`: one ephemeral sequential node per holder or
//! waiter, named `k:` or `s:` (key or subtree scope), the key with `%` and `/` escaped, `:`,
//! and ZooKeeper's sequence number.

use std::borrow::Cow;

use bytes::Bytes;

/// The name of a permanent value node in a key's directory.
pub(crate) const VALUE: &str = "=";
/// The name of a TTL value node in a key's directory.
pub(crate) const TTL_VALUE: &str = "=t";

/// The name of a key's epoch node in its directory.
pub(crate) const EPOCH: &str = "=e";

/// True if a child name is a value node's.
pub(crate) fn is_value_name(name: &str) -> bool {
    name == VALUE || name == TTL_VALUE
}

/// True if a child name is kv's own (a value or the epoch node), never a key's directory: key
/// segments that start with `=` are stored with one more `=` in front.
pub(crate) fn is_reserved_name(name: &str) -> bool {
    name.starts_with('=') && !name.starts_with("==")
}

/// In the native layout, true if a node is a key: it holds data or was written since its
/// creation. An empty node at data version 0 is a path segment.
pub(crate) fn is_key(stat: &zookeeper_client::Stat) -> bool {
    stat.version > 0 || stat.data_length > 0
}

/// The data of a hollow marker for a node with this stat.
pub(crate) fn hollow_mark(stat: &zookeeper_client::Stat) -> Vec<u8> {
    format!("{}:{}", stat.czxid, stat.version).into_bytes()
}

/// Maps kv keys to ZooKeeper paths under one base.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    base: String,
    /// Values in the key's own node (`layout=native`).
    native: bool,
}

impl Layout {
    /// A layout under `base`, an absolute path without a trailing `/` (not `/` itself);
    /// `native` keeps values in the keys' own nodes.
    pub fn new(base: &str, native: bool) -> Layout {
        Layout {
            base: base.to_owned(),
            native,
        }
    }

    /// True for the native layout: values in the key's own node.
    pub fn native(&self) -> bool {
        self.native
    }

    /// True if a child name is a value node's (never, in the native layout).
    pub fn is_value_name(&self, name: &str) -> bool {
        !self.native && is_value_name(name)
    }

    /// True if a child name is a key's directory (in the default layout, not kv's own node).
    pub fn is_dir_name(&self, name: &str) -> bool {
        self.native || !is_reserved_name(name)
    }

    /// The epoch node of a key (default layout).
    pub fn epoch(&self, key: &str) -> String {
        format!("{}/{EPOCH}", self.dir(key))
    }

    /// The value a node holds, if it is a key's: in the native layout the raw data of a node
    /// that [`is_key`]; else the tagged data of a value node.
    pub fn stored(&self, data: Vec<u8>, stat: &zookeeper_client::Stat) -> Option<Stored> {
        if !self.native {
            return Some(Stored::decode(data));
        }
        is_key(stat).then(|| Stored {
            value: Bytes::from(data),
            expires_ms: None,
        })
    }

    /// The base path.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The directory node of a kv key or prefix (`""` is the base).
    pub fn dir(&self, key: &str) -> String {
        let mut path = self.base.clone();
        if !key.is_empty() {
            if self.native {
                path.push('/');
                path.push_str(key);
                return path;
            }
            for segment in key.split('/') {
                path.push('/');
                path.push_str(&escape_segment(segment));
            }
        }
        path
    }

    /// The value node of a kv key: the TTL one or the permanent one (the key's own node in
    /// the native layout).
    pub fn value(&self, key: &str, ttl: bool) -> String {
        if self.native {
            return self.dir(key);
        }
        format!("{}/{}", self.dir(key), if ttl { TTL_VALUE } else { VALUE })
    }

    /// The kv key of a directory path under the base, if it is one.
    pub fn key_of_dir(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        if self.native {
            return (kv_core::normalize_key(rest).ok()? == rest).then(|| rest.to_owned());
        }
        if rest.split('/').any(is_reserved_name) {
            return None;
        }
        let segments: Vec<Cow<'_, str>> = rest.split('/').map(unescape_segment).collect();
        let key = segments.join("/");
        (kv_core::normalize_key(&key).ok()? == key).then_some(key)
    }

    /// The kv key of a value node path, if it is one.
    pub fn key_of_value(&self, path: &str) -> Option<String> {
        if self.native {
            return self.key_of_dir(path);
        }
        let (dir, name) = path.rsplit_once('/')?;
        is_value_name(name).then(|| self.key_of_dir(dir))?
    }

    /// The node under which the native layout's hollow markers live.
    pub fn hollow_dir(&self) -> String {
        format!("{}!kv-hollow", self.base)
    }

    /// The hollow marker of a key (native layout): one flat node per key.
    pub fn hollow_marker(&self, key: &str) -> String {
        let escaped = key.replace('%', "%25").replace('/', "%2F");
        format!("{}/{escaped}", self.hollow_dir())
    }

    /// The node under which every lock node of this store lives.
    pub fn locks(&self) -> String {
        format!("{}!kv", self.base)
    }

    /// The name prefix of a lock node (ZooKeeper appends the sequence number).
    pub fn lock_name(subtree: bool, key: &str) -> String {
        let escaped = key.replace('%', "%25").replace('/', "%2F");
        format!("{}:{escaped}:", if subtree { 's' } else { 'k' })
    }

    /// Parses a lock node name: scope, key and sequence number.
    pub fn parse_lock_name(name: &str) -> Option<LockNode> {
        let (scope, rest) = name.split_at_checked(2)?;
        let subtree = match scope {
            "k:" => false,
            "s:" => true,
            _ => return None,
        };
        let (escaped, sequence) = rest.rsplit_once(':')?;
        let key = escaped.replace("%2F", "/").replace("%25", "%");
        Some(LockNode {
            name: name.to_owned(),
            subtree,
            key,
            sequence: sequence.parse().ok()?,
        })
    }
}

/// One lock node: a holder or a waiter.
#[derive(Debug, Clone)]
pub(crate) struct LockNode {
    pub name: String,
    pub subtree: bool,
    pub key: String,
    pub sequence: i64,
}

impl LockNode {
    /// True if this node and `other` exclude each other: the same key (any scopes), or a
    /// subtree lock over the other's key.
    pub fn conflicts_with(&self, other: &LockNode) -> bool {
        self.key == other.key
            || (self.subtree && kv_core::covers(&self.key, &other.key))
            || (other.subtree && kv_core::covers(&other.key, &self.key))
    }
}

fn escape_segment(segment: &str) -> Cow<'_, str> {
    if segment.starts_with('=') {
        Cow::Owned(format!("={segment}"))
    } else {
        Cow::Borrowed(segment)
    }
}

fn unescape_segment(segment: &str) -> Cow<'_, str> {
    match segment.strip_prefix('=') {
        Some(rest) if !rest.is_empty() => Cow::Borrowed(rest),
        _ => Cow::Borrowed(segment),
    }
}

/// A value as stored in its node: a tag byte, then for a TTL value its expiry time (Unix
/// milliseconds, 8 bytes big-endian), then the value. ZooKeeper does not tell clients which
/// nodes are TTL nodes, and its reaper runs only every `znode.container.checkIntervalMs`
/// (60 s by default), so readers need the expiry time to hide the key at its TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub value: Bytes,
    pub expires_ms: Option<u64>,
}

const PERMANENT: u8 = 0;
const EXPIRING: u8 = 1;
/// Bytes the encoding adds to a value at most.
pub(crate) const OVERHEAD: usize = 9;

impl Stored {
    /// The node data of a value.
    pub fn encode(value: &[u8], expires_ms: Option<u64>) -> Vec<u8> {
        let mut data = Vec::with_capacity(value.len() + OVERHEAD);
        match expires_ms {
            None => data.push(PERMANENT),
            Some(at) => {
                data.push(EXPIRING);
                data.extend_from_slice(&at.to_be_bytes());
            }
        }
        data.extend_from_slice(value);
        data
    }

    /// Reads node data; data this store did not write is taken as a permanent raw value.
    pub fn decode(data: Vec<u8>) -> Stored {
        let data = Bytes::from(data);
        match data.first() {
            Some(&PERMANENT) => Stored {
                value: data.slice(1..),
                expires_ms: None,
            },
            Some(&EXPIRING) if data.len() >= OVERHEAD => {
                let mut at = [0; 8];
                at.copy_from_slice(&data[1..OVERHEAD]);
                Stored {
                    value: data.slice(OVERHEAD..),
                    expires_ms: Some(u64::from_be_bytes(at)),
                }
            }
            _ => Stored {
                value: data,
                expires_ms: None,
            },
        }
    }

    /// True if the value's TTL has passed by `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|at| at <= now_ms)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        let layout = Layout::new("/kv", false);
        assert_eq!(layout.dir(""), "/kv");
        assert_eq!(layout.dir("a/b"), "/kv/a/b");
        assert_eq!(layout.value("a/b", false), "/kv/a/b/=");
        assert_eq!(layout.value("a/b", true), "/kv/a/b/=t");
        assert_eq!(layout.key_of_value("/kv/a/b/=t").as_deref(), Some("a/b"));
        assert_eq!(layout.key_of_dir("/kv/a/=t/b"), None);
        assert_eq!(layout.dir("=x/y"), "/kv/==x/y");
        assert_eq!(layout.key_of_dir("/kv/==x/y").as_deref(), Some("=x/y"));
        assert_eq!(layout.key_of_value("/kv/a/b/=").as_deref(), Some("a/b"));
        assert_eq!(layout.key_of_dir("/kv/a/=").as_deref(), None);
        assert_eq!(layout.epoch("a/b"), "/kv/a/b/=e");
        assert_eq!(layout.key_of_dir("/kv/a/b/=e"), None);
        assert_eq!(layout.key_of_value("/kv/a/b/=e"), None);
        assert!(!layout.is_dir_name("=e") && layout.is_dir_name("==e"));
        assert_eq!(layout.key_of_dir("/kvx/a"), None);
        assert_eq!(layout.locks(), "/kv!kv");
        let name = Layout::lock_name(true, "a/b%c");
        let node = Layout::parse_lock_name(&format!("{name}0000000007")).unwrap();
        assert_eq!(
            (node.subtree, node.key.as_str(), node.sequence),
            (true, "a/b%c", 7)
        );
        let other = Layout::parse_lock_name("k:a%2Fb%25c%2Fd:0000000008").unwrap();
        assert_eq!(other.key, "a/b%c/d");
        assert!(node.conflicts_with(&other));
        let unrelated = Layout::parse_lock_name("k:a%2Fbc:0000000009").unwrap();
        assert!(!node.conflicts_with(&unrelated));
    }

    #[test]
    fn stored_values_round_trip() {
        for (value, expires) in [
            (&b""[..], None),
            (&b"\x01abc"[..], None),
            (&b"v"[..], Some(42)),
        ] {
            let stored = Stored::decode(Stored::encode(value, expires));
            assert_eq!((&stored.value[..], stored.expires_ms), (value, expires));
        }
        assert!(Stored::decode(Stored::encode(b"v", Some(5))).expired(5));
        let foreign = Stored::decode(b"plain".to_vec());
        assert_eq!(
            (&foreign.value[..], foreign.expires_ms),
            (&b"plain"[..], None)
        );
    }
}
