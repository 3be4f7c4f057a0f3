//! The native layout (`layout=native`): a key's value is a plain Redis string at
//! `<root>/<key>` (with no root, `<key>`), where `redis-cli GET` looks, and a TTL is Redis's own
//! expiry, so Redis frees expired values itself.
//!
//! Versions live beside the data, in the hash `P:nv` (key name → `<version>:<sha1 of the
//! value>`), from the store's revision counter `P:rev`. A value written by another tool is
//! noticed by its changed SHA-1 the next time kv reads it, and gets a new version then. Locks
//! are kv's usual lock keys under `P`. With no root, names starting with `kv{` are kv's own.
//!
//! Listing scans (`SCAN MATCH <prefix>/* TYPE string`): it is not a snapshot, and
//! `delete_tree` deletes in batches. Watches subscribe to keyspace notifications when the
//! server sends them (`notify-keyspace-events` with `K` and `A` or `g$x`) and re-read each key
//! named; otherwise they poll (`poll`, 100 ms by default) and compare snapshots. Either way
//! they may coalesce versions and keep no history.
//!
//! Like every kv-redis script, these take `ARGV[1]` = P and `ARGV[2]` = the log's length limit
//! (unused here), then their own arguments.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kv_core::backend::{Observed, WatchSender, WatchView, watch_channel};
use kv_core::{Child, Error, Key, KvPair, Result, WatchOptions, WatchStream, covers};
use redis::Script;

use crate::Inner;

/// Keys per `SCAN` answer and per batched read or delete.
const BATCH: usize = 500;
/// How often a watch polls when the server sends no keyspace notifications.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// Where the native layout keeps values, and how its watches hear of changes.
pub(crate) struct Native {
    /// What every data key starts with: `root/`, or `""` with no root.
    data: String,
    /// The database number, for keyspace notification channels.
    db: i64,
    /// The polling interval of watches when notifications are off.
    poll: Duration,
}

impl Native {
    /// The native layout under `root` (a normalized prefix, `""` for none).
    pub fn new(root: &str, db: i64, poll: Duration) -> Native {
        Native {
            data: if root.is_empty() {
                String::new()
            } else {
                format!("{root}/")
            },
            db,
            poll,
        }
    }

    /// The Redis key of a kv key.
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.data)
    }

    /// The Redis key of a kv key that may be written.
    pub fn checked_name(&self, key: &str) -> Result<String> {
        self.check(key)?;
        Ok(self.name(key))
    }

    /// Refuses keys and prefixes that would be kv's own keys (`kv{...}`) with no root.
    fn check(&self, key: &str) -> Result<()> {
        if self.data.is_empty() && key.starts_with("kv{") {
            return Err(Error::InvalidKey {
                key: key.chars().take(64).collect(),
                reason: "names starting with `kv{` are kv's own in a native Redis store without a root",
            });
        }
        Ok(())
    }

    /// The kv key of a Redis key, if it is one of this store's.
    fn key_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        let key = name.strip_prefix(self.data.as_str())?;
        (kv_core::normalize_key(key).ok()? == key && self.check(key).is_ok()).then_some(key)
    }

    /// The `SCAN` pattern of every Redis key strictly below `prefix`.
    fn below(&self, prefix: &str) -> String {
        let mut pattern = glob_escape(&self.data);
        if !prefix.is_empty() {
            pattern.push_str(&glob_escape(prefix));
            pattern.push('/');
        }
        pattern.push('*');
        pattern
    }
}

/// `text` with Redis glob's special characters escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// What the native scripts share: `P`, the versions hash, and a key's current value and
/// version (a value with no version, or whose SHA-1 changed, gets the next revision).
const PRELUDE: &str = r#"
local P = ARGV[1]
local META = P .. ':nv'
local function version(name, value)
  local sha = redis.sha1hex(value)
  local m = redis.call('HGET', META, name)
  if m then
    local v, s = string.match(m, '^(%d+):(%x+)$')
    if s == sha then return tonumber(v) end
  end
  local v = redis.call('INCR', P .. ':rev')
  redis.call('HSET', META, name, v .. ':' .. sha)
  return v
end
local function current(name)
  local value = redis.call('GET', name)
  if not value then
    redis.call('HDEL', META, name)
    return nil, 0
  end
  return value, version(name, value)
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// `ARGV[3..]`: names → for each that exists: name, value, version.
static READ: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local out = {}
for i = 3, #ARGV do
  local value, v = current(ARGV[i])
  if value then
    table.insert(out, {ARGV[i], value, v})
  end
end
return out
"#,
    )
});

/// `ARGV[3]` name, `[4]` value, `[5]` TTL ms (0: none), `[6]` mode (`-`, `absent`,
/// `version`), `[7]` expected version → `{1, new version}` or `{0, current version or 0}`.
pub(crate) static PUT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local name, new, ttl, mode, expected = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local value, v = current(name)
if mode == 'absent' and value then return {0, v} end
if mode == 'version' and (not value or v ~= expected) then return {0, v} end
local next = redis.call('INCR', P .. ':rev')
if ttl > 0 then
  redis.call('SET', name, new, 'PX', ttl)
else
  redis.call('SET', name, new)
end
redis.call('HSET', META, name, next .. ':' .. redis.sha1hex(new))
return {1, next}
"#,
    )
});

/// `ARGV[3]` name, `[4]` expected version (0: any) → `{1}` deleted, `{0}` absent, `{0, v}`
/// at another version.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local name, expected = ARGV[3], tonumber(ARGV[4])
local value, v = current(name)
if not value then return {0} end
if expected > 0 and v ~= expected then return {0, v} end
redis.call('DEL', name)
redis.call('HDEL', META, name)
return {1}
"#,
    )
});

/// `ARGV[3..]`: names → how many existed and were deleted.
static DELETE_MANY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local n = 0
for i = 3, #ARGV do
  n = n + redis.call('DEL', ARGV[i])
  redis.call('HDEL', META, ARGV[i])
end
return n
"#,
    )
});

impl Inner {
    fn native(&self) -> &Native {
        self.native
            .as_ref()
            .unwrap_or_else(|| unreachable!("native layout calls"))
    }

    /// The pairs of these Redis keys that exist, in one script call per batch.
    async fn read_names(&self, names: &[String]) -> Result<Vec<KvPair>> {
        let mut pairs = Vec::with_capacity(names.len());
        for batch in names.chunks(BATCH) {
            // A read that may give a foreign value its first version: safe to repeat.
            let mut call = self.reading(&READ);
            for name in batch {
                call.arg(name);
            }
            let found: Vec<(String, Vec<u8>, u64)> = self.invoke("get", call).await?;
            for (name, value, version) in found {
                if let Some(key) = self.native().key_of(&name) {
                    pairs.push(KvPair {
                        key: Key::from_normalized(key),
                        value: Bytes::from(value),
                        version,
                    });
                }
            }
        }
        Ok(pairs)
    }

    /// Every Redis string the prefix covers (its own key and everything below), unsorted.
    async fn scan(&self, prefix: &str) -> Result<Vec<String>> {
        let native = self.native();
        let mut names = Vec::new();
        if !prefix.is_empty() {
            names.push(native.name(prefix));
        }
        let pattern = native.below(prefix);
        let mut cursor = 0u64;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH)
                .arg("TYPE")
                .arg("string");
            let (next, found): (u64, Vec<String>) = self.read("list", cmd).await?;
            names.extend(found.into_iter().filter(|n| native.key_of(n).is_some()));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub async fn native_get(&self, key: &str) -> Result<Option<KvPair>> {
        self.native().check(key)?;
        Ok(self.read_names(&[self.native().name(key)]).await?.pop())
    }

    pub async fn native_exists(&self, key: &str) -> Result<bool> {
        self.native().check(key)?;
        let cmd = redis::cmd("EXISTS").arg(self.native().name(key)).clone();
        Ok(self.read::<i64>("exists", cmd).await? == 1)
    }

    /// Deletes a key (at `expected` only, if given): `Ok(true)` if it existed.
    pub async fn native_delete(&self, key: &str, expected: Option<u64>) -> Result<bool> {
        self.native().check(key)?;
        let mut call = self.writing(&DELETE);
        call.arg(self.native().name(key)).arg(expected.unwrap_or(0));
        let outcome: Vec<u64> = self.invoke("delete", call).await?;
        match (outcome.as_slice(), expected) {
            ([1], _) => Ok(true),
            (_, None) => Ok(false),
            ([0, current], Some(want)) => Err(Error::conflict(
                key,
                format!("the version is {current}, expected {want}"),
            )),
            (_, Some(want)) => Err(Error::conflict(
                key,
                format!("the key does not exist (expected version {want})"),
            )),
        }
    }

    pub async fn native_list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        self.native().check(prefix)?;
        let names = self.scan(prefix).await?;
        let mut pairs = self.read_names(&names).await?;
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(pairs)
    }

    pub async fn native_children(&self, prefix: &str) -> Result<Vec<Child>> {
        self.native().check(prefix)?;
        let native = self.native();
        let mut children: BTreeMap<Key, Child> = BTreeMap::new();
        for name in self.scan(prefix).await? {
            let Some(key) = native.key_of(&name) else {
                continue;
            };
            let rest = match prefix {
                "" => key,
                _ => match key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
                    Some(rest) => rest,
                    None => continue, // the prefix key itself
                },
            };
            let (child, deeper) = match rest.split_once('/') {
                Some((child, _)) => (child, true),
                None => (rest, false),
            };
            let child = match prefix {
                "" => child.to_owned(),
                _ => format!("{prefix}/{child}"),
            };
            let entry = children
                .entry(Key::from_normalized(&child))
                .or_insert_with(|| Child {
                    key: Key::from_normalized(&child),
                    has_value: false,
                    has_children: false,
                });
            entry.has_value |= !deeper;
            entry.has_children |= deeper;
        }
        Ok(children.into_values().collect())
    }

    pub async fn native_delete_tree(&self, prefix: &str) -> Result<u64> {
        self.native().check(prefix)?;
        let names = self.scan(prefix).await?;
        let mut deleted = 0;
        for batch in names.chunks(BATCH) {
            let mut call = self.writing(&DELETE_MANY);
            for name in batch {
                call.arg(name);
            }
            deleted += self.invoke::<u64>("delete_tree", call).await?;
        }
        Ok(deleted)
    }
}

/// Opens a watch on `target` (a key, or with `tree` a prefix) in the native layout.
pub(crate) async fn watch(
    inner: Arc<Inner>,
    target: &str,
    options: WatchOptions,
) -> Result<WatchStream> {
    let tree = options.tree;
    inner.capabilities.check_watch(&options)?;
    inner.native().check(target)?;
    let mut watcher = Watcher {
        inner,
        target: target.to_owned(),
        tree,
        view: WatchView::default(),
    };
    // Subscribe first, then read: a change in between is heard, never lost.
    let notifications = watcher.subscribe().await?;
    let mut initial = watcher.resync().await?;
    initial.sort_by(|a, b| a.key.cmp(&b.key));
    let (sender, stream) = watch_channel(initial, target, &options);
    tokio::spawn(watcher.run(notifications, sender));
    Ok(stream)
}

struct Watcher {
    inner: Arc<Inner>,
    target: String,
    tree: bool,
    view: WatchView,
}

/// The keyspace notifications of a watch, if the server sends them.
type Notifications = Option<redis::aio::PubSubStream>;

impl Watcher {
    /// Subscribes to the keyspace notifications of what the watch covers, if the server
    /// sends them (`notify-keyspace-events` with `K`, and `A` or `g`, `$` and `x`); `None`
    /// means polling.
    async fn subscribe(&self) -> Result<Notifications> {
        let config: Result<Vec<String>> = self
            .inner
            .run(
                "watch",
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("notify-keyspace-events")
                    .clone(),
            )
            .await;
        let flags = match config {
            Ok(reply) => reply.get(1).cloned().unwrap_or_default(),
            // CONFIG refused (managed Redis): poll.
            Err(Error::Backend(_) | Error::Auth { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let all = flags.contains('A') || ["g", "$", "x"].iter().all(|f| flags.contains(f));
        if !flags.contains('K') || !all {
            return Ok(None);
        }
        let native = self.inner.native();
        let channel = format!("__keyspace@{}__:", native.db);
        // A key's own channel; for a prefix, its key's and everything after it (siblings such
        // as `app-x` are filtered out by `refresh`).
        let pattern = match (self.tree, self.target.is_empty()) {
            (true, true) => format!("{channel}{}*", glob_escape(&native.data)),
            (true, false) => format!("{channel}{}*", glob_escape(&native.name(&self.target))),
            (false, _) => format!("{channel}{}", glob_escape(&native.name(&self.target))),
        };
        let within = self.inner.timeout * 2;
        let subscribe = async {
            let mut pubsub = self.inner.node().client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        let stream = tokio::time::timeout(within, subscribe)
            .await
            .map_err(|_| Error::Timeout {
                operation: "watch subscribe",
                after: within,
            })?
            .map_err(crate::map_error)?;
        Ok(Some(stream))
    }

    /// Everything the watch covers, read now, as events against what was delivered.
    async fn resync(&mut self) -> Result<Vec<kv_core::WatchEvent>> {
        let pairs = if self.tree {
            self.inner.native_list(&self.target).await?
        } else {
            self.inner
                .native_get(&self.target)
                .await?
                .into_iter()
                .collect()
        };
        let current = pairs
            .into_iter()
            .map(|p| (p.key, observed(p.value, p.version)))
            .collect();
        Ok(self.view.replace_all(current, 0))
    }

    /// The event for one key a notification named, after re-reading it.
    async fn refresh(&mut self, name: &str) -> Result<Option<kv_core::WatchEvent>> {
        let Some(key) = self.inner.native().key_of(name) else {
            return Ok(None);
        };
        let concerned = if self.tree {
            covers(&self.target, key)
        } else {
            key == self.target
        };
        if !concerned {
            return Ok(None);
        }
        let key = Key::from_normalized(key);
        let now = self.inner.native_get(key.as_str()).await?;
        Ok(self
            .view
            .update(key, now.map(|p| observed(p.value, p.version)), None))
    }

    async fn run(mut self, mut notifications: Notifications, mut sender: WatchSender) {
        let poll = self.inner.native().poll;
        let patience = self.inner.timeout * 3;
        loop {
            let batch = tokio::select! {
                _ = self.inner.closed.cancelled() => return sender.fail(Error::Closed),
                _ = sender.closed() => return,
                message = next_message(&mut notifications), if notifications.is_some() => {
                    match message {
                        Some(message) => {
                            let name = message
                                .get_channel_name()
                                .split_once("__:")
                                .map(|(_, name)| name.to_owned())
                                .unwrap_or_default();
                            self.refresh(&name).await.map(|e| e.into_iter().collect())
                        }
                        // The subscription broke: subscribe again and read everything.
                        None => self.recover(&mut notifications, patience).await,
                    }
                }
                _ = tokio::time::sleep(poll), if notifications.is_none() => self.resync().await,
            };
            match batch {
                Ok(events) => {
                    if !events.into_iter().all(|e| sender.send(e)) {
                        return;
                    }
                }
                Err(error) if error.is_transient() && notifications.is_none() => {
                    // A failed poll: the next one reads everything again, within patience.
                    match self.recover(&mut notifications, patience).await {
                        Ok(events) => {
                            if !events.into_iter().all(|e| sender.send(e)) {
                                return;
                            }
                        }
                        Err(error) => return sender.fail(error),
                    }
                }
                Err(error) => return sender.fail(error),
            }
        }
    }

    /// Subscribes again (if the watch had notifications) and re-reads everything, retrying
    /// for up to `patience`; the watch ends with the last error after that.
    async fn recover(
        &mut self,
        notifications: &mut Notifications,
        patience: Duration,
    ) -> Result<Vec<kv_core::WatchEvent>> {
        let had_notifications = notifications.is_some();
        let recovered = kv_core::backend::retry_idempotent("watch", patience, || async {
            let fresh = if had_notifications {
                self.subscribe().await?
            } else {
                None
            };
            Ok(fresh)
        })
        .await;
        *notifications = match recovered {
            Ok(fresh) => fresh,
            Err(error) => {
                return Err(Error::unavailable(
                    format!("the watch lost Redis and could not resume: {error}"),
                    None,
                ));
            }
        };
        self.resync().await
    }
}

async fn next_message(notifications: &mut Notifications) -> Option<redis::Msg> {
    match notifications {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

fn observed(value: Bytes, version: u64) -> Observed {
    Observed {
        value,
        version,
        expires_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        let rooted = Native::new("app", 0, DEFAULT_POLL);
        assert_eq!(rooted.name("a/b"), "app/a/b");
        assert_eq!(rooted.key_of("app/a/b"), Some("a/b"));
        assert_eq!(rooted.key_of("apple/x"), None);
        assert_eq!(rooted.key_of("app/a//b"), None);
        assert_eq!(rooted.below(""), "app/*");
        assert_eq!(rooted.below("a*b"), "app/a\\*b/*");
        let bare = Native::new("", 0, DEFAULT_POLL);
        assert_eq!(bare.name("a"), "a");
        assert_eq!(bare.below(""), "*");
        assert_eq!(bare.key_of("kv{app}:rev"), None);
        assert!(bare.check("kv{x}").is_err() && rooted.check("kv{x}").is_ok());
    }
}
