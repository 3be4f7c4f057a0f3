//! The embedded backend of **kv** on SQLite (bundled with the crate: nothing is needed from the
//! system): one database file that every process on the machine can open at once.
//!
//! - URLs: `sqlite:///absolute/path/kv.db` or `sqlite://./relative/path/kv.db`. Options:
//!   `sync=full` (fsync every commit; by default `synchronous=NORMAL` in WAL mode, which keeps
//!   every acknowledged write through a process crash, not through a power loss),
//!   `busy_timeout=5s` (how long a write waits for another process's), `history=N` (changes
//!   kept for `since`, default 10000), `poll=10ms` (how often a handle with watches or lock
//!   waiters looks for other processes' commits), `max_value_bytes=N` (default 16 MiB).
//! - Every change is one transaction: the value, its version from the store-wide revision
//!   counter, and a change-log record. Watches read the log; in this process they wake at
//!   once, for other processes within `poll` (`PRAGMA data_version`).
//! - TTL values expire by wall-clock time: reads skip them at once, and each open handle's
//!   reaper deletes them with a Delete record at their expiry (TTLs other processes wrote:
//!   within a second) — whichever process has the store open.
//! - Locks are rows with a lease, renewed by their holder: they exclude holders in every
//!   process (`locks_process_local = false`), with fencing tokens from the revision counter.
//!
//! The layout is in the `db` module.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kv_core::Result<()> {
//! use kv_core::{PutOptions, Store};
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("sqlite://{}/kv.db", dir.path().display());
//! let store = kv_sqlite::SqliteStore::open(&url).await?;
//! store.put("app/color", b"blue", PutOptions::default()).await?;
//! let other = kv_sqlite::SqliteStore::open(&url).await?; // as another process would
//! assert_eq!(other.get("app/color").await?.unwrap().value, "blue");
//! # Ok(()) }
//! ```

mod db;
mod lease;
mod lock;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kv_core::backend::{
    Driver, HandleState, Holdings, Locality, Opening, TxnOp, scratch_in_temp_dir,
};
use kv_core::{
    Capabilities, Child, DeleteOptions, Error, Key, KvPair, Lock, LockOptions, LockScope,
    Precondition, PutOptions, Result, Store, StoreUrl, Txn, TxnOpResult, WatchOptions, WatchStream,
};
use tokio::sync::Notify;

pub use db::LAYOUT_VERSION;

use crate::db::{Db, Settings, now_ms, read_covered, read_key};

/// Default `busy_timeout`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `history`.
pub const DEFAULT_HISTORY: u64 = 10_000;
/// Default `poll`.
pub const DEFAULT_POLL: Duration = Duration::from_millis(10);
/// Default `max_value_bytes`.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// `sqlite:///path/kv.db`: this backend as `kv::open` and the tools know it.
pub const DRIVER: Driver = Driver::new("sqlite", &["sqlite"], Locality::File, open_driver)
    .with_scratch(|url, leaf| scratch_in_temp_dir(url, leaf, "kv.db"))
    .with_local_path(SqliteStore::path_for)
    .with_busy_hint(
        "another process kept the SQLite store locked for a write longer than busy_timeout; retry, or wait longer with --store 'sqlite:///path/kv.db?busy_timeout=30s'",
    );

fn open_driver(url: StoreUrl) -> Opening {
    Box::pin(async move { Ok(Arc::new(SqliteStore::from_url(&url).await?) as Arc<dyn Store>) })
}

/// A handle on a SQLite store. Cheap to share as `Arc<dyn Store>`.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// What the store, its watches, locks, poller and reaper share.
pub(crate) struct Inner {
    pub db: Arc<Db>,
    pub capabilities: Capabilities,
    pub closed: HandleState,
    /// Bumped after each commit of this handle and when the poller sees another connection's.
    pub changed: tokio::sync::watch::Sender<u64>,
    /// Wakes the reaper after a TTL write.
    reaper: Notify,
    poll: Duration,
    /// Locks held through this handle (key, subtree, token, lost), released on close.
    pub held: Holdings<(Key, bool, u64)>,
    /// Leases granted through this handle (id, lost), revoked on close.
    pub leases: Holdings<i64>,
    shown: String,
}

impl Inner {
    /// Wakes this handle's watches and lock waiters.
    pub fn signal(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl SqliteStore {
    /// Opens `sqlite:///absolute/path` or `sqlite://./relative/path`, creating the database
    /// (and its directory) if needed.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        Self::from_url(&StoreUrl::parse(url)?).await
    }

    /// Opens a parsed `sqlite://` URL.
    pub async fn from_url(url: &StoreUrl) -> Result<SqliteStore> {
        SqliteOptions::from_url(url)?.open().await
    }

    /// Opens the store `options` describe.
    async fn open_with(options: SqliteOptions) -> Result<SqliteStore> {
        let shown = format!("sqlite://{}", options.path.display());
        let poll = options.poll.max(Duration::from_millis(1));
        let max_value_bytes = options.max_value_bytes;
        let settings = Settings {
            path: options.path,
            sync_full: options.sync_full,
            busy_timeout: options.busy_timeout,
            history: options.history.max(1),
        };
        let db = tokio::task::spawn_blocking(move || {
            if let Some(dir) = settings.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::unavailable(
                        format!("cannot create the directory {}: {e}", dir.display()),
                        Some(Box::new(e)),
                    )
                })?;
            }
            Db::open(settings)
        })
        .await
        .map_err(|e| Error::Backend(Box::new(e)))??;
        let (changed, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner {
            db: Arc::new(db),
            capabilities: Capabilities::full("sqlite", max_value_bytes),
            closed: HandleState::default(),
            changed,
            reaper: Notify::new(),
            poll,
            held: Holdings::default(),
            leases: Holdings::default(),
            shown,
        });
        tokio::spawn(poll_for_changes(Arc::downgrade(&inner)));
        tokio::spawn(reap(Arc::downgrade(&inner)));
        Ok(SqliteStore { inner })
    }
}

impl SqliteStore {
    /// The database file a `sqlite://` URL names (checking the URL, touching nothing).
    pub fn path_for(url: &StoreUrl) -> Result<PathBuf> {
        path_of(url)
    }
}

/// How to open a SQLite store: its file, fsync per commit, how long a write waits for another
/// process's, history kept, how often other processes' changes are looked for, largest value.
/// Built in code or parsed from a `sqlite://` URL; [`SqliteOptions::open`] opens the store.
///
/// ```no_run
/// # async fn demo() -> kv_core::Result<()> {
/// let store = kv_sqlite::SqliteOptions::new("/var/lib/app/kv.db")
///     .sync_full(true)
///     .busy_timeout(std::time::Duration::from_secs(10))
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    path: PathBuf,
    sync_full: bool,
    busy_timeout: Duration,
    history: u64,
    poll: Duration,
    max_value_bytes: usize,
}

impl SqliteOptions {
    /// The database file at `path` (created, with its directory, if needed), with the
    /// defaults.
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            sync_full: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            history: DEFAULT_HISTORY,
            poll: DEFAULT_POLL,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }

    /// The options a `sqlite://` URL gives (see the crate docs).
    pub fn from_url(url: &StoreUrl) -> Result<SqliteOptions> {
        if url.scheme != "sqlite" {
            return Err(Error::invalid_url(format!(
                "kv-sqlite opens sqlite:// URLs, not {}://",
                url.scheme
            )));
        }
        url.check_options(&["sync", "busy_timeout", "history", "poll", "max_value_bytes"])?;
        let sync_full = match url.option("sync") {
            None | Some("normal") => false,
            Some("full") => true,
            Some(other) => {
                return Err(Error::invalid_url(format!(
                    "option sync: {other:?} is not normal or full"
                )));
            }
        };
        Ok(SqliteOptions {
            path: path_of(url)?,
            sync_full,
            busy_timeout: url
                .duration_option("busy_timeout")?
                .unwrap_or(DEFAULT_BUSY_TIMEOUT),
            history: url.parse_option("history")?.unwrap_or(DEFAULT_HISTORY),
            poll: url.duration_option("poll")?.unwrap_or(DEFAULT_POLL),
            max_value_bytes: url
                .parse_option("max_value_bytes")?
                .unwrap_or(DEFAULT_MAX_VALUE_BYTES),
        })
    }

    /// `synchronous=FULL`: an fsync per commit (default NORMAL: durable across a process
    /// crash, not a power loss).
    pub fn sync_full(mut self, full: bool) -> SqliteOptions {
        self.sync_full = full;
        self
    }

    /// How long a write waits for another process's (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> SqliteOptions {
        self.busy_timeout = timeout;
        self
    }

    /// Changes kept for `since` watches (default 10,000).
    pub fn history(mut self, changes: u64) -> SqliteOptions {
        self.history = changes;
        self
    }

    /// How often watches look for other processes' changes (default 10 ms).
    pub fn poll(mut self, every: Duration) -> SqliteOptions {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// The largest value to accept (default 16 MiB).
    pub fn max_value_bytes(mut self, bytes: usize) -> SqliteOptions {
        self.max_value_bytes = bytes;
        self
    }

    /// Opens the store, creating the database if needed.
    pub async fn open(self) -> Result<SqliteStore> {
        SqliteStore::open_with(self).await
    }
}

/// The database file of a URL: `sqlite:///abs/path` or `sqlite://./rel/path`.
fn path_of(url: &StoreUrl) -> Result<PathBuf> {
    if url.username.is_some() || url.password.is_some() {
        return Err(Error::invalid_url(
            "sqlite:// URLs take no user or password",
        ));
    }
    let host = url.hosts.first().map(|h| h.host.as_str());
    let path = match (host, url.path.as_str()) {
        (None, "") => None,
        (None, path) => Some(PathBuf::from(format!("/{path}"))),
        (Some("."), path) if !path.is_empty() => Some(PathBuf::from(format!("./{path}"))),
        _ => None,
    };
    path.filter(|_| url.hosts.len() <= 1).ok_or_else(|| {
        Error::invalid_url(
            "a SQLite store is a file path: sqlite:///absolute/path/kv.db or \
             sqlite://./relative/path/kv.db",
        )
    })
}

/// Watches for other connections' commits while anyone waits for changes (a watch, a lock
/// waiter), every `poll`, and wakes them.
async fn poll_for_changes(inner: std::sync::Weak<Inner>) {
    let mut conn: Option<rusqlite::Connection> = None;
    let mut seen: Option<i64> = None;
    loop {
        let Some(store) = inner.upgrade() else { return };
        if store.closed.is_cancelled() {
            return;
        }
        let poll = store.poll;
        if store.changed.receiver_count() > 0 {
            let db = store.db.clone();
            let taken = conn.take();
            let polled = tokio::task::spawn_blocking(move || {
                let conn = match taken {
                    Some(conn) => conn,
                    None => db.connect()?,
                };
                let version: i64 = conn
                    .query_row("PRAGMA data_version", [], |r| r.get(0))
                    .map_err(|e| db::sql_error("poll", e))?;
                Ok::<_, Error>((conn, version))
            })
            .await;
            if let Ok(Ok((kept, version))) = polled {
                conn = Some(kept);
                // The first reading signals too: a commit may have landed between a waiter's
                // last read and this baseline.
                if seen != Some(version) {
                    store.signal();
                }
                seen = Some(version);
            }
        }
        drop(store);
        tokio::time::sleep(poll).await;
    }
}

/// Deletes expired values (with Delete records) at each next expiry, and at least once a
/// second for TTLs other processes wrote.
async fn reap(inner: std::sync::Weak<Inner>) {
    let parts: fn(&Inner) -> (&HandleState, &Notify) = |store| (&store.closed, &store.reaper);
    kv_core::backend::reap_expired(inner, parts, Duration::from_millis(1), |store| async move {
        let next = store
            .db
            .run(|conn| db::next_expiry(conn).map_err(|e| db::sql_error("reap", e)));
        match next.await {
            Ok(Some(at)) if at <= now_ms() => {
                match store.db.write("reap", |w| w.reap()).await {
                    Ok(()) => store.signal(),
                    Err(error) => {
                        tracing::warn!(target: "kv", backend = "sqlite", %error, "the TTL reaper failed; retrying");
                    }
                }
                Some(Duration::ZERO)
            }
            Ok(Some(at)) => Some(Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))),
            _ => None,
        }
    })
    .await;
}

impl Inner {
    async fn write(self: &Arc<Self>, key: &str, value: &[u8], options: &PutOptions) -> Result<u64> {
        let precondition = options.precondition;
        let key = self.closed.key(key)?.to_owned();
        self.capabilities.check_value(value.len())?;
        let ttl = self.capabilities.check_put(options)?;
        let lease = options
            .lease
            .as_ref()
            .map(|lease| Ok::<_, Error>((lease::id_of(lease, self)?, lease::lost(lease))))
            .transpose()?;
        let value = value.to_vec();
        let written = self
            .db
            .write("put", move |w| {
                let (expires_at, lease) = match lease {
                    Some((id, lost)) => match w.lease_expiry(id)? {
                        Some(at) => (Some(at), Some(id)),
                        None => return Ok(Err(lost)),
                    },
                    None => (
                        ttl.map(|t| w.now + i64::try_from(t.as_millis()).unwrap_or(i64::MAX / 2)),
                        None,
                    ),
                };
                let current = w.version(&key)?;
                let refused = match (precondition, current) {
                    (None, _) => None,
                    (Some(Precondition::MustNotExist), Some(v)) => {
                        Some(format!("the key exists (version {v})"))
                    }
                    (Some(Precondition::MustNotExist), None) => None,
                    (Some(Precondition::Version(want)), None) => {
                        Some(format!("the key does not exist (expected version {want})"))
                    }
                    (Some(Precondition::Version(want)), Some(v)) if v != want => {
                        Some(format!("the version is {v}, expected {want}"))
                    }
                    (Some(Precondition::Version(_)), Some(_)) => None,
                };
                if let Some(reason) = refused {
                    return Ok(Err(Error::conflict(&key, reason)));
                }
                w.put(&key, &value, expires_at, lease).map(Ok)
            })
            .await??;
        self.signal();
        if ttl.is_some() || options.lease.is_some() {
            self.reaper.notify_one();
        }
        Ok(written)
    }

    async fn txn(self: &Arc<Self>, txn: Txn) -> Result<Vec<TxnOpResult>> {
        self.closed.check_open()?;
        let txn = txn.check(&self.capabilities)?;
        let versions = self
            .db
            .write("txn", move |w| {
                let mut current = HashMap::new();
                for key in txn.keys() {
                    current.insert(key.clone(), w.current(key.as_str())?);
                }
                let checked = txn.check_conditions(|key| {
                    let (value, version) = current.get(key)?.as_ref()?;
                    Some((value.as_slice(), *version))
                });
                if let Err(conflict) = checked {
                    return Ok(Err(conflict));
                }
                txn.ops
                    .iter()
                    .map(|op| match op {
                        TxnOp::Put { key, value } => w
                            .put(key.as_str(), value, None, None)
                            .map(|version| TxnOpResult::Put { version }),
                        TxnOp::Delete { key } => w
                            .delete(key.as_str())
                            .map(|existed| TxnOpResult::Delete { existed }),
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Ok)
            })
            .await??;
        self.signal();
        Ok(versions)
    }

    async fn remove(self: &Arc<Self>, key: &str, version: Option<u64>) -> Result<bool> {
        let key = self.closed.key(key)?.to_owned();
        let removed = self
            .db
            .write("delete", move |w| {
                if let Some(want) = version {
                    match w.version(&key)? {
                        Some(v) if v == want => {}
                        Some(v) => {
                            return Ok(Err(Error::conflict(
                                &key,
                                format!("the version is {v}, expected {want}"),
                            )));
                        }
                        None => {
                            return Ok(Err(Error::conflict(
                                &key,
                                format!("the key does not exist (expected version {want})"),
                            )));
                        }
                    }
                }
                w.delete(&key).map(Ok)
            })
            .await??;
        self.signal();
        Ok(removed)
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("url", &self.inner.shown)
            .finish()
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    async fn put_opts(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        self.inner.write(key, value, &options).await
    }

    async fn get(&self, key: &str) -> Result<Option<KvPair>> {
        let key = self.inner.closed.key(key)?.to_owned();
        self.inner
            .db
            .run(move |conn| {
                let found = read_key(conn, &key, now_ms()).map_err(|e| db::sql_error("get", e))?;
                Ok(found.map(|(value, version)| KvPair {
                    key: Key::from_normalized(&key),
                    value: Bytes::from(value),
                    version,
                }))
            })
            .await
    }

    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        self.inner.remove(key, options.version).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let key = self.inner.closed.key(key)?.to_owned();
        self.inner
            .db
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT 1 FROM kv_data
                     WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                )
                .and_then(|mut s| s.exists(rusqlite::params![key, now_ms()]))
                .map_err(|e| db::sql_error("exists", e))
            })
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        let prefix = self.inner.closed.prefix(prefix)?.to_owned();
        self.inner
            .db
            .run(move |conn| {
                read_covered(conn, &prefix, now_ms()).map_err(|e| db::sql_error("list", e))
            })
            .await
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>> {
        let prefix = self.inner.closed.prefix(prefix)?.to_owned();
        self.inner
            .db
            .run(move |conn| {
                let keys = read_covered(conn, &prefix, now_ms())
                    .map_err(|e| db::sql_error("list_children", e))?;
                let mut children: BTreeMap<String, (bool, bool)> = BTreeMap::new();
                for pair in keys {
                    let key = pair.key.as_str();
                    let rest = if prefix.is_empty() {
                        key
                    } else if key == prefix {
                        continue;
                    } else {
                        &key[prefix.len() + 1..]
                    };
                    let (name, deeper) = match rest.split_once('/') {
                        Some((name, _)) => (name, true),
                        None => (rest, false),
                    };
                    let child = if prefix.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    let entry = children.entry(child).or_default();
                    entry.0 |= !deeper;
                    entry.1 |= deeper;
                }
                Ok(children
                    .into_iter()
                    .map(|(key, (has_value, has_children))| Child {
                        key: Key::from_normalized(&key),
                        has_value,
                        has_children,
                    })
                    .collect())
            })
            .await
    }

    async fn delete_tree(&self, prefix: &str) -> Result<u64> {
        let prefix = self.inner.closed.prefix(prefix)?.to_owned();
        let removed = self
            .inner
            .db
            .write("delete_tree", move |w| {
                let mut removed = 0;
                for key in w.keys_covered(&prefix)? {
                    if w.delete(&key)? {
                        removed += 1;
                    }
                }
                Ok(removed)
            })
            .await?;
        self.inner.signal();
        Ok(removed)
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
        watch::open(self.inner.clone(), watched, options).await
    }

    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        self.inner.closed.check_open()?;
        let key = Key::parse(key)?;
        let ttl = self.inner.capabilities.check_ttl(options.ttl)?;
        Ok(Box::new(lock::SqliteLock {
            inner: self.inner.clone(),
            key,
            subtree: options.scope == LockScope::Subtree,
            options: options.ttl(ttl),
        }))
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
