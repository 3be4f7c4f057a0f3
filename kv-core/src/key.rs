//! Keys and prefixes: parsed and normalized once, before anything reaches a backend.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Longest key, in bytes of its normalized form, that every backend accepts.
pub const MAX_KEY_BYTES: usize = 1024;

/// A normalized, validated key: one or more `/`-separated segments.
///
/// Leading and trailing `/` are ignored (`/a/b/` is `a/b`). Empty segments (`a//b`), the segments
/// `.` and `..`, control characters (NUL included), characters ZooKeeper cannot store
/// (U+E000–U+F8FF, U+FFF0–U+FFFF) and keys longer than [`MAX_KEY_BYTES`] are rejected with
/// [`Error::InvalidKey`].
///
/// Cloning is cheap (a reference count).
///
/// ```
/// use kv_core::Key;
/// let key = Key::parse("/app/config/").unwrap();
/// assert_eq!(key.as_str(), "app/config");
/// assert!(Key::parse("app//config").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

impl Key {
    /// Parses and normalizes `input`; the empty path (`""` or `"/"`) is not a key.
    pub fn parse(input: &str) -> Result<Key> {
        Ok(Key(Arc::from(normalize_key(input)?)))
    }

    /// The normalized key, segments joined by `/`, no leading or trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.split('/')
    }

    /// The key one segment up, or `None` for a single-segment key.
    pub fn parent(&self) -> Option<Key> {
        self.0.rfind('/').map(|at| Key(Arc::from(&self.0[..at])))
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// This key with `child` (itself validated and normalized) appended.
    pub fn join(&self, child: &str) -> Result<Key> {
        let child = normalize(child)?;
        if child.is_empty() {
            return Ok(self.clone());
        }
        Key::parse(&format!("{}/{}", self.0, child))
    }

    /// The key with `prefix` removed from its front, or `None` if `prefix` does not cover it
    /// or is the key itself.
    pub fn strip_prefix(&self, prefix: &Prefix) -> Option<&str> {
        if prefix.is_root() {
            return Some(self.as_str());
        }
        self.0
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
    }

    /// Builds a key from a string the caller has already normalized with [`Key::parse`] or
    /// [`normalize`]; for backends turning stored keys back into `Key`s. Re-validates in debug
    /// builds only.
    pub fn from_normalized(normalized: &str) -> Key {
        debug_assert!(matches!(normalize(normalized), Ok(n) if n == normalized && !n.is_empty()));
        Key(Arc::from(normalized))
    }

    /// The watched key or prefix as the key of an [`EventKind::Synced`](crate::EventKind)
    /// marker: the empty string (the whole store) included, which no other `Key` can be.
    pub(crate) fn watched(path: &str) -> Key {
        debug_assert!(matches!(normalize(path), Ok(n) if n == path) || path.is_empty());
        Key(Arc::from(path))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Key> {
        Key::parse(s)
    }
}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// A normalized prefix for the tree operations: a key, or the empty prefix covering the whole
/// store.
///
/// Prefixes are bounded by segments: `app` covers `app` and `app/...`, never `apple`.
///
/// ```
/// use kv_core::{Key, Prefix};
/// let app = Prefix::parse("app/").unwrap();
/// assert!(app.covers(&Key::parse("app").unwrap()));
/// assert!(app.covers(&Key::parse("app/x").unwrap()));
/// assert!(!app.covers(&Key::parse("apple").unwrap()));
/// assert!(Prefix::parse("").unwrap().is_root());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Prefix(Option<Key>);

impl Prefix {
    /// Parses and normalizes `input`; `""` and `"/"` give the root prefix.
    pub fn parse(input: &str) -> Result<Prefix> {
        let normalized = normalize(input)?;
        Ok(if normalized.is_empty() {
            Prefix(None)
        } else {
            Prefix(Some(Key(Arc::from(normalized))))
        })
    }

    /// The prefix covering every key.
    pub fn root() -> Prefix {
        Prefix(None)
    }

    /// True for the prefix covering every key.
    pub fn is_root(&self) -> bool {
        self.0.is_none()
    }

    /// The prefix as a key, `None` for the root.
    pub fn as_key(&self) -> Option<&Key> {
        self.0.as_ref()
    }

    /// The normalized prefix, `""` for the root.
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("", Key::as_str)
    }

    /// True if `key` is this prefix or below it.
    pub fn covers(&self, key: &Key) -> bool {
        covers(self.as_str(), key.as_str())
    }
}

impl From<Key> for Prefix {
    fn from(key: Key) -> Prefix {
        Prefix(Some(key))
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True if the normalized `key` equals the normalized `prefix` or lies below it, segment-wise.
pub fn covers(prefix: &str, key: &str) -> bool {
    prefix.is_empty()
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The top-level segment under which backends with a flat keyspace (etcd, Consul) keep their
/// locks when a store has no root: `!kv/...` beside the data.
pub const LOCK_AREA: &str = "!kv";

/// Refuses a normalized key or prefix inside [`LOCK_AREA`] (`!kv`, `!kv/...`): for backends
/// whose root-less stores keep their locks there.
pub fn check_outside_lock_area(key: &str) -> Result<()> {
    if covers(LOCK_AREA, key) {
        return Err(invalid(
            key,
            "`!kv` is reserved for locks in a store without a root",
        ));
    }
    Ok(())
}

/// Validates a key and returns its normalized form as a slice of the input, without allocating:
/// [`normalize`] that also rejects the empty key, as [`Key::parse`] does.
pub fn normalize_key(input: &str) -> Result<&str> {
    match normalize(input)? {
        "" => Err(invalid(input, "a key needs at least one segment")),
        normalized => Ok(normalized),
    }
}

/// Validates `input` and returns its normalized form as a slice of it, without allocating.
///
/// `""` and `"/"` normalize to `""` (the root); [`Key::parse`] rejects that, [`Prefix::parse`]
/// accepts it.
pub fn normalize(input: &str) -> Result<&str> {
    let trimmed = input.strip_prefix('/').unwrap_or(input);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.len() > MAX_KEY_BYTES {
        return Err(invalid(input, "longer than the 1024-byte limit"));
    }
    if trimmed.is_empty() {
        return if input.len() <= 1 {
            Ok("")
        } else {
            Err(invalid(input, "empty segment"))
        };
    }
    for segment in trimmed.split('/') {
        match segment {
            "" => return Err(invalid(input, "empty segment")),
            "." | ".." => return Err(invalid(input, "`.` and `..` are not allowed as segments")),
            _ => {}
        }
    }
    let printable_ascii = trimmed.bytes().all(|b| (b' '..=b'~').contains(&b));
    if !printable_ascii && let Some(c) = trimmed.chars().find(|&c| !allowed_char(c)) {
        let reason = if c.is_control() {
            "control characters are not allowed"
        } else {
            "characters U+E000–U+F8FF and U+FFF0–U+FFFF are not allowed"
        };
        return Err(invalid(input, reason));
    }
    Ok(trimmed)
}

fn allowed_char(c: char) -> bool {
    !(c.is_control()
        || ('\u{E000}'..='\u{F8FF}').contains(&c)
        || ('\u{FFF0}'..='\u{FFFF}').contains(&c))
}

fn invalid(input: &str, reason: &'static str) -> Error {
    const SHOWN: usize = 64;
    let shown = match input.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}…", &input[..at]),
        None => input.to_owned(),
    };
    Error::InvalidKey { key: shown, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_slashes() {
        for input in ["a/b", "/a/b", "a/b/", "/a/b/"] {
            assert_eq!(Key::parse(input).unwrap().as_str(), "a/b");
        }
    }

    #[test]
    fn rejects_bad_keys() {
        for input in [
            "",
            "/",
            "//",
            "a//b",
            "./a",
            "a/..",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            "a\u{e000}",
            "a\u{ffff}",
        ] {
            assert!(
                matches!(Key::parse(input), Err(Error::InvalidKey { .. })),
                "{input:?} should be invalid"
            );
        }
        assert!(Key::parse(&"x".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(Key::parse(&"x".repeat(MAX_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn accepts_unusual_but_valid_keys() {
        for input in ["a b", "ü/ß", "...", ".hidden", "a:b@c", "日本/語", "a*?[x]"] {
            assert!(Key::parse(input).is_ok(), "{input:?}");
        }
    }

    #[test]
    fn prefixes_are_segment_bounded() {
        let app = Prefix::parse("app").unwrap();
        assert!(app.covers(&Key::parse("app").unwrap()));
        assert!(app.covers(&Key::parse("app/x/y").unwrap()));
        assert!(!app.covers(&Key::parse("apple").unwrap()));
        assert!(!app.covers(&Key::parse("ap").unwrap()));
        assert!(Prefix::root().covers(&Key::parse("anything").unwrap()));
        assert!(Prefix::parse("//").is_err());
    }

    #[test]
    fn navigation() {
        let key = Key::parse("a/b/c").unwrap();
        assert_eq!(key.parent().unwrap().as_str(), "a/b");
        assert_eq!(key.name(), "c");
        assert_eq!(Key::parse("a").unwrap().parent(), None);
        assert_eq!(key.join("/d/").unwrap().as_str(), "a/b/c/d");
        assert!(key.join("..").is_err());
        assert_eq!(key.strip_prefix(&Prefix::parse("a").unwrap()), Some("b/c"));
        assert_eq!(key.strip_prefix(&Prefix::parse("a/b/c").unwrap()), None);
        assert_eq!(key.strip_prefix(&Prefix::parse("a/bx").unwrap()), None);
    }

    #[test]
    fn long_invalid_input_is_truncated_in_the_error() {
        let err = Key::parse(&format!("{}\0", "y".repeat(5000))).unwrap_err();
        assert!(err.to_string().len() < 300, "{err}");
    }
}
