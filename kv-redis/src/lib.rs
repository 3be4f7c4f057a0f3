//! The Redis backend of **kv** (Redis 6.2+/7), on the `redis` crate's `ConnectionManager`.
//!
//! - URL: `redis://[user:password@]host:6379[/db][?root=app&timeout=5s&history=10000]`.
//!   TLS: `rediss://` or `tls=true`, with `ca=PATH` (PEM; else the system roots) and
//!   `cert=PATH&key=PATH` for client certificates.
//! - Sentinel: `redis+sentinel://host:26379[,host:26379...]/service[?db=N]` (or
//!   `rediss+sentinel://`): the primary is asked of the Sentinels at open and again after a
//!   failure that can mean a failover, and calls follow it. `wait_replicas=N` makes every write
//!   wait (`WAIT`) until N replicas have it. Sentinels are asked without credentials; the URL's
//!   user and password are for the data nodes. The `node` module has the details.
//! - Every change is one Lua script updating value, version, the prefix index and the change
//!   log together; listing a prefix reads the index by lexicographic range, never `SCAN`.
//!   The layout is documented in the `scripts` module.
//! - Watches follow the change log (a stream), which also gives the history for `since`; they
//!   need no keyspace notifications, so they work where `CONFIG SET` is disabled. TTL expiry is
//!   enforced by the scripts at read time and surfaced as Delete events by a reaper every client
//!   runs.
//! - Locks: lock hashes with `PEXPIRE`, token-checked renewal and release, fencing tokens from
//!   the store's revision counter, subtree checks against an index of held locks.
//! - `layout=native` (`poll=100ms`): values as plain strings at `<root>/<key>` where
//!   `redis-cli` and other programs read and write them; the `native` module has the details.

mod lease;
mod lock;
mod native;
mod node;
mod options;
mod scripts;
mod watch;

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kv_core::backend::{Driver, HandleState, Holdings, Locality, Opening, TxnOp};
use kv_core::{
    Capabilities, Child, Condition, DeleteOptions, Error, Key, KvPair, Lock, LockOptions,
    LockScope, Precondition, PutOptions, Result, Store, StoreUrl, Txn, TxnOpResult, WatchOptions,
    WatchStream,
};
use node::Call;
pub use options::RedisOptions;
use redis::Script;
use tokio::sync::Notify;

/// Default timeout of every call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Change records kept for `since` (and for watchers that fall behind), unless `history=N`.
pub const DEFAULT_HISTORY: usize = 10_000;
/// Largest value.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// Conditions plus operations per transaction: one script holds the server for all of them.
pub const MAX_TXN_OPS: usize = 1024;
/// Keys per page when listing.
const PAGE: usize = 1000;

/// `redis://host:6379[/db][?root=...]` and Sentinel's URLs: this backend as `kv::open` and the
/// tools know it.
pub const DRIVER: Driver = Driver::new(
    "redis",
    &["redis", "rediss", "redis+sentinel", "rediss+sentinel"],
    Locality::Server,
    open_driver,
)
.with_scratch(scratch);

fn open_driver(url: StoreUrl) -> Opening {
    Box::pin(async move { Ok(Arc::new(RedisStore::from_url(&url).await?) as Arc<dyn Store>) })
}

/// A `?root=` below the URL's root (the path names the database).
fn scratch(url: &StoreUrl, leaf: &str) -> Result<StoreUrl> {
    let mut url = url.clone();
    let root = match url.option("root") {
        Some(root) if !root.is_empty() => format!("{root}/{leaf}"),
        _ => leaf.to_owned(),
    };
    url.options.retain(|(name, _)| name != "root");
    url.options.push(("root".into(), root));
    Ok(url)
}

/// A handle on a Redis server. Cheap to share as `Arc<dyn Store>`.
pub struct RedisStore {
    inner: Arc<Inner>,
}

/// What the store, its watches, locks and reaper share.
pub(crate) struct Inner {
    /// The node calls go to; replaced when Sentinel names a new primary.
    pub node: RwLock<Arc<node::Node>>,
    pub connector: node::Connector,
    /// With `redis+sentinel://`: whom to ask where the primary is.
    pub sentinels: Option<node::Sentinels>,
    /// `wait_replicas=N`: every write waits until N replicas have it (`WAIT`).
    pub wait_replicas: Option<usize>,
    /// Prefix of every Redis key: `kv{root}`.
    pub prefix: String,
    pub history: usize,
    pub timeout: Duration,
    pub capabilities: Capabilities,
    pub closed: HandleState,
    /// Locks held through this handle (key, subtree, token), released on close.
    pub held: Holdings<(Key, bool, u64)>,
    /// Leases granted through this handle (id, lost), revoked on close.
    pub leases: Holdings<u64>,
    /// Wakes the reaper after a TTL write.
    pub reaper: Notify,
    /// `layout=native`: values as plain strings where Redis's tools look.
    pub native: Option<native::Native>,
    shown: String,
}

impl RedisStore {
    /// Connects to the server a `redis://` URL names.
    pub async fn open(url: &str) -> Result<RedisStore> {
        Self::from_url(&StoreUrl::parse(url)?).await
    }

    /// Connects to the server of a parsed URL (`redis://`, `rediss://`), or asks the Sentinels
    /// of a `redis+sentinel://` URL for the primary.
    pub async fn from_url(url: &StoreUrl) -> Result<RedisStore> {
        RedisOptions::from_url(url)?.connect().await
    }

    /// The store over connected state, once the server proved usable.
    async fn over(inner: Arc<Inner>) -> Result<RedisStore> {
        // Fail at open, not at the first call, when the server is unreachable, refuses us, or
        // is a Redis Cluster node (each call would hit MOVED or cross-slot errors later).
        let cluster: String = inner
            .run("open", redis::cmd("INFO").arg("cluster").clone())
            .await?;
        if cluster.contains("cluster_enabled:1") {
            return Err(Error::invalid_url(
                "this server is a Redis Cluster node; kv-redis does not support Redis Cluster \
                 (it needs one standalone primary: redis://host:6379, or the Sentinels that \
                 name it: redis+sentinel://host:26379,.../service)",
            ));
        }
        if inner.native.is_none() {
            // Native values expire in Redis itself.
            tokio::spawn(reap(Arc::downgrade(&inner)));
        }
        Ok(RedisStore { inner })
    }
}

impl Inner {
    /// A call of a script that only reads, with the common arguments (prefix, history).
    pub fn reading<'a>(&self, script: &'a Script) -> Call<'a> {
        self.call(script, false)
    }

    /// A call of a script that writes, with the common arguments (prefix, history).
    pub fn writing<'a>(&self, script: &'a Script) -> Call<'a> {
        self.call(script, true)
    }

    fn call<'a>(&self, script: &'a Script, write: bool) -> Call<'a> {
        let mut call = Call::new(script, write);
        call.arg(&self.prefix).arg(self.history);
        call
    }

    async fn write(&self, key: &str, value: &[u8], options: &PutOptions) -> Result<u64> {
        let precondition = options.precondition;
        let key = self.closed.key(key)?;
        // The same arguments for both layouts' scripts: the key's name, value, TTL, mode.
        let (script, name) = match &self.native {
            Some(native) => (&*native::PUT, native.checked_name(key)?),
            None => (&*scripts::PUT, key.to_owned()),
        };
        self.capabilities.check_value(value.len())?;
        let ttl = self.capabilities.check_put(options)?;
        let lease = options
            .lease
            .as_ref()
            .map(|lease| lease::id_of(lease, self))
            .transpose()?;
        let (mode, expected) = match precondition {
            None => ("-", 0),
            Some(Precondition::MustNotExist) => ("absent", 0),
            Some(Precondition::Version(v)) => ("version", v),
        };
        let ttl_ms = ttl.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let mut invocation = self.writing(script);
        invocation
            .arg(name)
            .arg(value)
            .arg(ttl_ms)
            .arg(mode)
            .arg(expected);
        if let Some(id) = lease {
            invocation.arg(id);
        }
        let outcome: Vec<i64> = self.invoke("put", invocation).await?;
        let (written, version) = match outcome.as_slice() {
            [written, version] => (*written, u64::try_from(*version).unwrap_or(0)),
            _ => {
                return Err(options.lease.as_ref().map_or_else(
                    || Error::Backend("unexpected answer of the put script".into()),
                    lease::lost,
                ));
            }
        };
        if written == 1 {
            if (ttl.is_some() || lease.is_some()) && self.native.is_none() {
                self.reaper.notify_one();
            }
            return Ok(version);
        }
        Err(conflict(key, precondition, version))
    }

    /// A transaction: one script ([`scripts::TXN`]) checks the conditions and applies the
    /// writes at one revision.
    async fn txn(&self, txn: Txn) -> Result<Vec<TxnOpResult>> {
        self.closed.check_open()?;
        let txn = txn.check(&self.capabilities)?;
        let mut invocation = self.writing(&scripts::TXN);
        invocation.arg(txn.conditions.len());
        for (key, condition) in &txn.conditions {
            invocation.arg(key.as_str());
            match condition {
                Condition::Missing => invocation.arg("missing").arg(""),
                Condition::Exists => invocation.arg("exists").arg(""),
                Condition::Version(v) => invocation.arg("version").arg(*v),
                Condition::Value(value) => invocation.arg("value").arg(&value[..]),
            };
        }
        for op in &txn.ops {
            match op {
                TxnOp::Put { key, value } => {
                    invocation.arg("put").arg(key.as_str()).arg(&value[..])
                }
                TxnOp::Delete { key } => invocation.arg("del").arg(key.as_str()).arg(""),
            };
        }
        let outcome: Vec<u64> = self.invoke("txn", invocation).await?;
        match outcome.as_slice() {
            [1, version, done @ ..] if done.len() == txn.ops.len() => Ok(txn
                .ops
                .iter()
                .zip(done)
                .map(|(op, done)| match op {
                    TxnOp::Put { .. } => TxnOpResult::Put { version: *version },
                    TxnOp::Delete { .. } => TxnOpResult::Delete {
                        existed: *done == 1,
                    },
                })
                .collect()),
            [0, failed, version] => {
                let index = usize::try_from(*failed)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(1);
                let (key, condition) = txn
                    .conditions
                    .get(index)
                    .ok_or_else(|| Error::Backend("the txn script named no condition".into()))?;
                let found = (*version > 0).then_some((&b""[..], *version));
                let reason = match (condition, condition.check(found)) {
                    (Condition::Value(_), _) | (_, Ok(())) => {
                        format!("the value (version {version}) differs from the expected one")
                    }
                    (_, Err(reason)) => reason,
                };
                Err(Error::conflict(key, reason))
            }
            _ => Err(Error::Backend(
                format!("unexpected answer of the txn script: {outcome:?}").into(),
            )),
        }
    }

    /// A key's live version (and value, if asked for), `None` if it has none: one `HMGET` of
    /// its hash, no script. A value with a TTL is checked against the server's time (a second
    /// round trip: Redis removes a value at its TTL itself, but one written by an older kv
    /// carries no Redis expiry), so an expired value is hidden even before anything removes it.
    async fn point_read(
        &self,
        operation: &'static str,
        key: &str,
        with_value: bool,
    ) -> Result<(Option<Vec<u8>>, Option<u64>)> {
        let mut read = redis::Cmd::with_capacity(5, self.prefix.len() + key.len() + 24);
        read.arg("HMGET").arg(format!("{}:d:{key}", self.prefix));
        if with_value {
            read.arg("v");
        }
        read.arg("ver").arg("exp");
        let mut fields: Vec<Option<Vec<u8>>> = self.read(operation, read).await?;
        let number = |field: Option<Vec<u8>>| -> Option<u64> {
            std::str::from_utf8(field.as_deref()?).ok()?.parse().ok()
        };
        let expiry = number(fields.pop().flatten());
        let version = number(fields.pop().flatten());
        if let (Some(at), Some(_)) = (expiry, version) {
            let (seconds, micros): (u64, u64) = self.run(operation, redis::cmd("TIME")).await?;
            if at <= seconds * 1000 + micros / 1000 {
                return Ok((None, None));
            }
        }
        Ok((fields.pop().flatten(), version))
    }

    /// Live pairs a prefix covers, sorted, page by page.
    pub async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        let mut pairs = Vec::new();
        let mut after = String::new();
        loop {
            let mut invocation = self.reading(&scripts::LIST);
            invocation.arg(prefix).arg(&after).arg(PAGE);
            let page: Vec<(String, Vec<u8>, u64)> = self.invoke("list", invocation).await?;
            let full = page.len() >= PAGE;
            for (key, value, version) in page {
                after.clone_from(&key);
                pairs.push(pair(&key, value, version)?);
            }
            if !full {
                pairs.sort_by(|a, b| a.key.cmp(&b.key));
                pairs.dedup_by(|a, b| a.key == b.key);
                return Ok(pairs);
            }
        }
    }
}

/// The `Conflict` of a conditional write that found the key at `version` (0: absent).
pub(crate) fn conflict(key: &str, precondition: Option<Precondition>, version: u64) -> Error {
    Error::conflict(
        key,
        match (precondition, version) {
            (Some(Precondition::Version(want)), 0) => {
                format!("the key does not exist (expected version {want})")
            }
            (Some(Precondition::Version(want)), v) => {
                format!("the version is {v}, expected {want}")
            }
            (_, v) => format!("the key exists (version {v})"),
        },
    )
}

pub(crate) fn pair(key: &str, value: Vec<u8>, version: u64) -> Result<KvPair> {
    Ok(KvPair {
        key: Key::parse(key)
            .map_err(|_| Error::Backend(format!("a stored key is not a kv key: {key:?}").into()))?,
        value: Bytes::from(value),
        version,
    })
}

/// Removes expired values with Delete records, at each next expiry (at least once a second, to
/// catch TTLs written by other clients).
async fn reap(inner: std::sync::Weak<Inner>) {
    let parts: fn(&Inner) -> (&HandleState, &Notify) = |store| (&store.closed, &store.reaper);
    kv_core::backend::reap_expired(inner, parts, Duration::from_millis(5), |store| async move {
        match store
            .invoke::<(u64, i64)>("reap", store.writing(&scripts::REAP))
            .await
        {
            Ok((_, next)) if next >= 0 => {
                Some(Duration::from_millis(u64::try_from(next).unwrap_or(0)))
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(target: "kv", backend = "redis", %error, "the TTL reaper failed; retrying in 1 s");
                None
            }
        }
    })
    .await;
}

/// Maps redis errors to kv errors.
pub(crate) fn map_error(error: redis::RedisError) -> Error {
    let code = error.code().unwrap_or_default().to_owned();
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code.as_str(), "WRONGPASS" | "NOAUTH" | "NOPERM")
    {
        return Error::Auth {
            message: error.to_string(),
        };
    }
    // Refusals before anything ran: a Redis loading its data after a restart, a replica
    // whose primary is down, a cluster slot moving.
    if matches!(
        code.as_str(),
        "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN"
    ) {
        return Error::unavailable(
            format!("redis is not serving: {error}"),
            Some(Box::new(error)),
        );
    }
    if error.is_timeout() {
        return Error::Timeout {
            operation: "redis request",
            after: Duration::ZERO,
        };
    }
    if error.is_io_error() || error.is_connection_refusal() || error.is_connection_dropped() {
        return Error::unavailable(
            format!("cannot reach redis: {error}"),
            Some(Box::new(error)),
        );
    }
    Error::Backend(Box::new(error))
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.shown)
            .finish()
    }
}

#[async_trait]
impl Store for RedisStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    async fn put_opts(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        self.inner.write(key, value, &options).await
    }

    async fn get(&self, key: &str) -> Result<Option<KvPair>> {
        let key = self.inner.closed.key(key)?;
        if self.inner.native.is_some() {
            return self.inner.native_get(key).await;
        }
        let (value, version) = self.inner.point_read("get", key, true).await?;
        Ok(version.map(|version| KvPair {
            key: Key::from_normalized(key),
            value: Bytes::from(value.unwrap_or_default()),
            version,
        }))
    }

    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        let key = self.inner.closed.key(key)?;
        if self.inner.native.is_some() {
            return self.inner.native_delete(key, options.version).await;
        }
        let mut invocation = self.inner.writing(&scripts::DELETE);
        let Some(version) = options.version else {
            invocation.arg(key).arg(0);
            let outcome: Vec<i64> = self.inner.invoke("delete", invocation).await?;
            return Ok(outcome.first() == Some(&1));
        };
        invocation.arg(key).arg(version.max(1));
        let outcome: Vec<u64> = match self
            .inner
            .invoke::<Vec<i64>>("atomic_delete", invocation)
            .await?
        {
            outcome if outcome.first() == Some(&1) => return Ok(true),
            outcome => outcome.into_iter().map(|v| v.unsigned_abs()).collect(),
        };
        Err(Error::conflict(
            key,
            match outcome.get(1) {
                Some(current) => format!("the version is {current}, expected {version}"),
                None => format!("the key does not exist (expected version {version})"),
            },
        ))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let key = self.inner.closed.key(key)?;
        if self.inner.native.is_some() {
            return self.inner.native_exists(key).await;
        }
        let (_, version) = self.inner.point_read("exists", key, false).await?;
        Ok(version.is_some())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        let prefix = self.inner.closed.prefix(prefix)?;
        if self.inner.native.is_some() {
            return self.inner.native_list(prefix).await;
        }
        self.inner.list(prefix).await
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>> {
        let prefix = self.inner.closed.prefix(prefix)?;
        if self.inner.native.is_some() {
            return self.inner.native_children(prefix).await;
        }
        let mut invocation = self.inner.reading(&scripts::CHILDREN);
        invocation.arg(prefix);
        let found: Vec<(String, u8, u8)> = self.inner.invoke("list_children", invocation).await?;
        let mut children = found
            .into_iter()
            .map(|(key, has_value, has_children)| {
                Ok(Child {
                    key: Key::parse(&key)?,
                    has_value: has_value == 1,
                    has_children: has_children == 1,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        children.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(children)
    }

    async fn delete_tree(&self, prefix: &str) -> Result<u64> {
        let prefix = self.inner.closed.prefix(prefix)?;
        if self.inner.native.is_some() {
            return self.inner.native_delete_tree(prefix).await;
        }
        let mut invocation = self.inner.writing(&scripts::DELETE_TREE);
        invocation.arg(prefix);
        self.inner.invoke("delete_tree", invocation).await
    }

    async fn grant(&self, ttl: Duration) -> Result<kv_core::Lease> {
        self.inner.closed.check_open()?;
        let ttl = self.inner.capabilities.check_grant(ttl)?;
        lease::grant(&self.inner, ttl).await
    }

    async fn attach_lease(&self, id: &str) -> Result<kv_core::Lease> {
        self.inner.closed.check_open()?;
        self.inner.capabilities.check_attach()?;
        lease::attach(&self.inner, id).await
    }

    async fn txn(&self, txn: Txn) -> Result<Vec<TxnOpResult>> {
        self.inner.txn(txn).await
    }

    async fn watch_opts(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        let watched = self.inner.closed.watched(key, &options)?;
        if self.inner.native.is_some() {
            return native::watch(self.inner.clone(), watched, options).await;
        }
        watch::open(self.inner.clone(), watched, options).await
    }

    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        self.inner.closed.check_open()?;
        let key = Key::parse(key)?;
        let ttl = self.inner.capabilities.check_ttl(options.ttl)?;
        Ok(Box::new(lock::RedisLock {
            inner: self.inner.clone(),
            key,
            subtree: options.scope == LockScope::Subtree,
            options: options.ttl(ttl),
        }))
    }

    async fn purge(&self) -> Result<()> {
        self.delete_tree("").await?;
        let mut del = redis::cmd("DEL");
        for name in scripts::BOOKKEEPING {
            del.arg(format!("{}:{name}", self.inner.prefix));
        }
        self.inner.run::<u64>("purge", del).await.map(drop)
    }

    async fn close(&self) -> Result<()> {
        if !self.inner.closed.begin_close() {
            return Ok(());
        }
        for (key, subtree, token) in self.inner.held.take_all() {
            let _ = lock::renew_or_release(&self.inner, &key, subtree, token, Duration::ZERO).await;
        }
        for id in self.inner.leases.take_all() {
            let _ = lease::revoke(&self.inner, id).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod error_tests {
    use redis::{ErrorKind, ServerErrorKind};

    #[test]
    fn a_redis_still_loading_its_data_is_unavailable() {
        // Found by the robustness runs: right after a restart Redis answers LOADING, which
        // was an untyped backend error.
        let error = redis::RedisError::from((
            ErrorKind::Server(ServerErrorKind::BusyLoading),
            "Redis is loading the dataset in memory",
        ));
        let mapped = super::map_error(error);
        assert!(
            matches!(mapped, kv_core::Error::Unavailable { .. }),
            "{mapped:?}"
        );
    }
}
