//! The ZooKeeper backend of **kv** (ZooKeeper 3.6+ with `extendedTypesEnabled=true` for TTL
//! nodes), on the async `zookeeper-client` crate.
//!
//! - URL: `zookeeper://[user:password@]host:2181[,host:2181...][/base][?session_timeout=10s&
//!   timeout=5s&sync_reads=true&layout=native&reclaim_after=60s]`; `zookeepers://` or `tls=true` for TLS (the server's `secureClientPort`), with
//!   `ca=PATH` and `cert=PATH&key=PATH` (PEM). The base path defaults to `/kv` (never the root: `/zookeeper` is ZooKeeper's
//!   own). With a user and password the client authenticates with the `digest` scheme and
//!   creates every node readable and writable only by that identity.
//! - With several members listed, each read is preceded by a barrier that makes its member
//!   apply every write acknowledged before (a `multi` of one `check`, a write that changes
//!   nothing, pipelined with the read; ZooKeeper's own `sync` does not order a read on the
//!   leader): ZooKeeper answers reads from the member's own state, which can miss a write
//!   another client just had acknowledged. `sync_reads=false` turns it off (faster reads that
//!   may be stale across clients), `sync_reads=true` turns it on for a URL that names one
//!   member of an ensemble.
//! - Each key is a directory node holding its value in a child node `=` (layout in the
//!   `layout` module): implicit parents are never keys, a key keeps its children when its value
//!   is deleted, and each value can be a TTL node of its own. `layout=native` keeps the value
//!   raw in the key's own node, where ZooKeeper's tools look (no TTLs there).
//! - Versions are the value node's `mzxid`: store-wide and increasing. CAS checks them and
//!   writes with a `multi` that also checks the key's epoch node (ZooKeeper's data versions
//!   restart with a node, so a key deleted and created again must not pass for the one read);
//!   a deleted key's guard is reclaimed after `reclaim_after` (see [`ZooKeeperOptions::reclaim_after`]).
//! - Listing walks the tree one level per round trip with batched multi-reads (never a read per
//!   key); `delete_tree` removes the subtree with one `multi`.
//! - Watches are persistent (recursive) watches; each event re-reads the node, so versions in
//!   between may be coalesced. After a reconnect the watch re-reads everything it covers and
//!   reports the differences; if the session expires it ends with an error.
//! - Locks follow the ephemeral-sequential recipe in one lock directory, each holder on a
//!   ZooKeeper session of its own whose timeout is the lock's TTL.

mod batch;
mod layout;
mod lease;
mod lock;
mod options;
mod reclaim;
mod tree;
mod txn;
mod value;
mod watch;

pub use options::ZooKeeperOptions;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::{Driver, HandleState, Holdings, Locality, Opening};
use kv_core::{
    Capabilities, Child, DeleteOptions, Error, Key, KvPair, Lock, LockOptions, LockScope,
    PutOptions, Result, Secret, Store, StoreUrl, Txn, TxnOpResult, WatchOptions, WatchStream,
};
use zookeeper_client as zk;

use crate::layout::Layout;
use crate::value::Removal;

/// Default timeout of every call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default session timeout of the store's connection.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest value: ZooKeeper's default `jute.maxbuffer` is 1 MiB for a whole request, path
/// included. Lower it with `max_value_bytes=N` for servers with a smaller buffer.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024 - 8 * 1024 - layout::OVERHEAD;
/// Conditions plus operations per transaction (one `multi`, within `jute.maxbuffer` with
/// every value: [`kv_core::Txn::check`] holds their sum to `max_value_bytes`).
pub const MAX_TXN_OPS: usize = 256;
/// The base path when the URL names none.
pub const DEFAULT_BASE: &str = "/kv";
/// Longest TTL a ZooKeeper TTL node can carry (five bytes of milliseconds).
const MAX_TTL_MS: u128 = 0xFF_FFFF_FFFF;

/// `zookeeper://host:2181[,host...][/base]`: this backend as `kv::open` and the tools know it.
pub const DRIVER: Driver = Driver::new(
    "zookeeper",
    &["zookeeper", "zookeepers"],
    Locality::Server,
    open_driver,
)
.with_scratch(scratch);

fn open_driver(url: StoreUrl) -> Opening {
    Box::pin(async move { Ok(Arc::new(ZooKeeperStore::from_url(&url).await?) as Arc<dyn Store>) })
}

/// A node below the URL's base (`/kv` when it names none, as the store's default base).
fn scratch(url: &StoreUrl, leaf: &str) -> Result<StoreUrl> {
    let mut url = url.clone();
    let base = match url.path.is_empty() {
        true => "kv",
        false => url.path.as_str(),
    };
    url.path = format!("{base}/{leaf}");
    Ok(url)
}

/// A handle on a ZooKeeper ensemble. Cheap to share as `Arc<dyn Store>`.
pub struct ZooKeeperStore {
    inner: Arc<Inner>,
}

/// How to open a ZooKeeper session (for the store, and for each lock holder).
pub(crate) struct Connection {
    cluster: String,
    auth: Option<(String, Secret)>,
    tls: Option<zk::TlsOptions>,
    timeout: Duration,
}

/// What the store, its watches and locks share.
pub(crate) struct Inner {
    connection: Connection,
    session_timeout: Duration,
    /// The store's session; replaced by a new one if ZooKeeper expires it.
    client: Mutex<zk::Client>,
    pub layout: Layout,
    pub capabilities: Capabilities,
    pub closed: HandleState,
    pub timeout: Duration,
    /// Reads ask their member to catch up with the leader first (`sync_reads`; by default
    /// when the URL lists several members).
    sync_reads: bool,
    /// Lock nodes held through this handle (path → holder session and `lost`), freed on close.
    pub held: Holdings<(String, zk::Client)>,
    /// Lease sessions granted through this handle, ended on close.
    pub leases: Holdings<Arc<lease::LeaseSession>>,
    /// Removes the guards of emptied keys once no write in flight can need them.
    pub reclaimer: Arc<reclaim::Reclaimer>,
    /// This handle's last conditional writes, for CASes on their versions without a read.
    pub known: value::Known,
    shown: String,
}

impl Drop for Inner {
    /// Wakes the reclaimer, which then finds the handle gone and ends.
    fn drop(&mut self) {
        self.reclaimer.wake();
    }
}

impl Connection {
    /// Opens a session with this timeout. With several members listed, a round in which none
    /// takes the session (an election: members outside a quorum close new connections) is
    /// tried again, within twice the call timeout; a single server that refuses fails at once.
    pub async fn connect(&self, session_timeout: Duration) -> Result<zk::Client> {
        if !self.cluster.contains(',') {
            return self.connect_once(session_timeout).await;
        }
        kv_core::backend::retry_idempotent("connect", self.timeout * 2, || {
            self.connect_once(session_timeout)
        })
        .await
    }

    /// One round over the members (`with_fail_eagerly`: `NoHosts` once each has been tried).
    async fn connect_once(&self, session_timeout: Duration) -> Result<zk::Client> {
        let mut connector = zk::Client::connector()
            .with_session_timeout(session_timeout)
            .with_connection_timeout(self.timeout)
            .with_fail_eagerly();
        if let Some((user, password)) = &self.auth {
            let credentials = format!("{user}:{}", password.expose());
            connector = connector.with_auth("digest", credentials.as_bytes());
        }
        match &self.tls {
            None => {
                timed(
                    "connect",
                    self.timeout * 2,
                    connector.connect(&self.cluster),
                )
                .await
            }
            Some(tls) => {
                let connect = connector
                    .with_tls(tls.clone())
                    .secure_connect(&self.cluster);
                timed("connect", self.timeout * 2, connect).await
            }
        }
    }

    /// The ACL of every node this store creates.
    pub fn acls(&self) -> zk::Acls<'static> {
        if self.auth.is_some() {
            zk::Acls::creator_all()
        } else {
            zk::Acls::anyone_all()
        }
    }
}

impl ZooKeeperStore {
    /// Connects to the ensemble a `zookeeper://` URL names.
    pub async fn open(url: &str) -> Result<ZooKeeperStore> {
        Self::from_url(&StoreUrl::parse(url)?).await
    }

    /// Connects to the ensemble of a parsed URL.
    pub async fn from_url(url: &StoreUrl) -> Result<ZooKeeperStore> {
        ZooKeeperOptions::from_url(url)?.connect().await
    }
}

/// The client's TLS settings from PEM (the client uses aws-lc-rs, like the rest of the
/// workspace).
pub(crate) fn tls_options(files: kv_core::Tls) -> Result<zk::TlsOptions> {
    let bad = |what: &str, e: zk::Error| Error::invalid_url(format!("{what}: {e}"));
    let mut options = zk::TlsOptions::new();
    if let Some(ca) = &files.ca {
        options = options
            .with_pem_ca(&String::from_utf8_lossy(ca))
            .map_err(|e| bad("the CA (ca)", e))?;
    }
    if let Some((cert, key)) = &files.identity {
        options = options
            .with_pem_identity(&String::from_utf8_lossy(cert), key.expose())
            .map_err(|e| bad("the client certificate and key (cert, key)", e))?;
    }
    Ok(options)
}

/// Runs a ZooKeeper call with a timeout, mapping its errors.
pub(crate) async fn timed<T>(
    operation: &'static str,
    after: Duration,
    call: impl Future<Output = std::result::Result<T, zk::Error>>,
) -> Result<T> {
    timed_raw(operation, after, call)
        .await?
        .map_err(|e| map_error(operation, e))
}

/// kv's error for a ZooKeeper error the caller did not handle itself.
pub(crate) fn map_error(operation: &'static str, error: zk::Error) -> Error {
    match error {
        zk::Error::NoAuth | zk::Error::AuthFailed => Error::Auth {
            message: format!("ZooKeeper refused to {operation}: {error}"),
        },
        zk::Error::ConnectionLoss
        | zk::Error::NoHosts
        | zk::Error::SessionExpired
        | zk::Error::ClientClosed
        | zk::Error::Throttled
        | zk::Error::Timeout => Error::unavailable(
            format!("cannot reach ZooKeeper to {operation}: {error}; check that the ensemble runs"),
            Some(Box::new(error)),
        ),
        // The client reports a broken connection (reset, refused) as a custom error around
        // the io::Error, and one that stopped answering (a frozen server) as a bare message:
        // the call may be retried on another connection.
        zk::Error::Custom(_) if connection_broke(&error) => Error::unavailable(
            format!("lost the connection to ZooKeeper during {operation}: {error}"),
            Some(Box::new(error)),
        ),
        other => Error::Backend(Box::new(other)),
    }
}

/// kv's error for a failed write: a request that was sent when the connection broke (lost,
/// reset, or no answer in time) may have been applied, so it is [`Error::OutcomeUnknown`];
/// anything else as [`map_error`].
pub(crate) fn map_write_error(operation: &'static str, error: zk::Error) -> Error {
    let in_flight = match &error {
        zk::Error::ConnectionLoss | zk::Error::Timeout => true,
        zk::Error::Custom(_) => connection_broke(&error),
        _ => false,
    };
    if in_flight {
        return Error::OutcomeUnknown {
            operation,
            reason: format!("the connection to ZooKeeper broke during the call ({error})"),
        };
    }
    map_error(operation, error)
}

/// True for an `io::Error`, bare or as zookeeper-client 0.11 holds it: its `CustomError`
/// keeps the source in an `Arc<dyn Error>`, and that `Arc` is what `source()` returns.
/// True for the client's custom errors that mean the connection broke: an io::Error inside,
/// or its "no response from connection in N ms" when the server stopped answering.
fn connection_broke(error: &zk::Error) -> bool {
    match error {
        zk::Error::Custom(custom) => {
            std::error::Error::source(custom).is_some_and(is_io)
                || names_a_silent_connection(&error.to_string())
        }
        _ => false,
    }
}

/// True if an error of the read barrier is the server's answer (the `multi` went through the
/// pipeline), not a lost request.
fn is_answer(error: &zk::Error) -> bool {
    matches!(
        error,
        zk::Error::BadVersion | zk::Error::NoNode | zk::Error::NoAuth | zk::Error::BadArguments(_)
    )
}

/// The client's message for a connection that stopped answering (it carries no io::Error).
fn names_a_silent_connection(message: &str) -> bool {
    message.contains("no response from connection")
}

fn is_io(error: &(dyn std::error::Error + 'static)) -> bool {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    error.is::<std::io::Error>()
        || error
            .downcast_ref::<Shared>()
            .is_some_and(|inner| inner.is::<std::io::Error>())
}

impl Inner {
    /// The store's session, replaced first if ZooKeeper has expired it.
    pub async fn client(&self) -> Result<zk::Client> {
        self.closed.check_open()?;
        let current = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !current.state().is_terminated() {
            return Ok(current);
        }
        tracing::warn!(target: "kv", backend = "zookeeper", "the store's session ended; opening a new one");
        let fresh = self.connection.connect(self.session_timeout).await?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Runs `reads` after a barrier that makes the member the session is connected to apply
    /// every write acknowledged before it (with `sync_reads`; nothing more is sent without).
    /// ZooKeeper answers reads from the member's own state, so without it a read can miss an
    /// acknowledged write. ZooKeeper's `sync` is no such barrier on the leader: the leader's
    /// commit processor does not hold a session's later reads behind a `sync` (`matchSyncs`
    /// is false there, ZooKeeper 3.6–3.9), so a read on the leader can miss a write that a
    /// follower already applied and another client already read (the robustness runs caught
    /// one, 5 ms apart). A write is: every member holds a session's later requests until its
    /// writes are applied, and applies writes in zxid order. So the barrier is a `multi` of one
    /// `check` of `/` (any version), proposed and committed like any write and changing
    /// nothing; only its answer matters, not its outcome. It is sent first and `reads` (not
    /// polled before) right behind it, in the session's one pipeline; its answer is awaited
    /// after theirs. It costs a write per read: `sync_reads=false` trades it for reads that
    /// may be stale across clients.
    pub async fn caught_up<T>(
        &self,
        client: &zk::Client,
        reads: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let barrier = self.sync_reads.then(|| {
            let mut multi = client.new_multi_writer();
            // `/` always exists; whatever the check answers, the multi went through the log.
            let _ = multi.add_check_version("/", -1);
            multi.commit()
        });
        let value = reads.await?;
        if let Some(barrier) = barrier {
            match barrier.await.map_err(zk::Error::from) {
                Ok(_) => {}
                Err(error) if is_answer(&error) => {}
                Err(error) => return Err(map_error("sync", error)),
            }
        }
        Ok(value)
    }

    /// Runs a read (it changes nothing, so it can be asked again) within the store's timeout,
    /// again after a lost connection: the session moves to another member meanwhile.
    pub async fn read<T, F, Fut>(&self, operation: &'static str, read: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        kv_core::backend::retry_idempotent(operation, self.timeout, read).await
    }

    /// Runs a call with the store's timeout.
    pub async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = std::result::Result<T, zk::Error>>,
    ) -> Result<T> {
        timed(operation, self.timeout, call).await
    }

    /// The checks every call on a key makes first.
    fn key<'a>(&self, key: &'a str) -> Result<&'a str> {
        self.closed.key(key)
    }

    /// Options for a lease's value node: ephemeral (its session is the lease).
    fn ephemeral_options(&self) -> zk::CreateOptions<'static> {
        zk::CreateMode::Ephemeral.with_acls(self.connection.acls())
    }

    /// Options for a value node: persistent, or a TTL node.
    fn value_options(&self, ttl: Option<Duration>) -> zk::CreateOptions<'static> {
        let options = zk::CreateMode::Persistent.with_acls(self.connection.acls());
        match ttl {
            Some(ttl) => options.with_ttl(ttl),
            None => options,
        }
    }

    /// Creates the directory nodes (containers, the base included) down to `dir`; in the
    /// native layout persistent nodes, which can take a value later.
    pub async fn make_dirs(&self, client: &zk::Client, dir: &str) -> Result<()> {
        let mode = if self.layout.native() {
            zk::CreateMode::Persistent
        } else {
            zk::CreateMode::Container
        };
        let options = mode.with_acls(self.connection.acls());
        self.call("create parents", client.mkdir(dir, &options))
            .await
    }

    /// Removes the directories from `dir` up (not the base) while they are empty, so that an
    /// emptied directory does not linger until ZooKeeper's container reaper runs: one delete
    /// per level, all sent at the first poll, deepest first (a directory that is not empty
    /// stays, and so do its parents). In the native layout, whose directories are persistent
    /// nodes that no reaper removes, only empty path segments go, one level at a time: a
    /// parent that is a key stays, and a hollow one is left to the reclaimer.
    pub(crate) async fn prune(&self, client: &zk::Client, dir: String) {
        if self.layout.native() {
            return self.prune_native(client, dir).await;
        }
        let mut levels = Vec::new();
        let mut dir = dir;
        while dir.len() > self.layout.base().len() {
            let parent = dir.rfind('/').map(|at| dir[..at].to_owned());
            levels.push(dir);
            match parent {
                Some(parent) => dir = parent,
                None => break,
            }
        }
        let deletes: Vec<_> = levels.iter().map(|d| client.delete(d, None)).collect();
        let _ = tokio::time::timeout(self.timeout, futures::future::join_all(deletes)).await;
    }

    async fn prune_native(&self, client: &zk::Client, mut dir: String) {
        while dir.len() > self.layout.base().len() {
            match self.call("prune", client.check_stat(&dir)).await {
                // A path segment never written: nothing can hold a version of it.
                Ok(Some(stat))
                    if stat.num_children == 0 && stat.data_length == 0 && stat.version == 0 => {}
                // Written and emptied: a key with an empty value, or a hollow key, which the
                // reclaimer removes in its time.
                Ok(Some(stat)) if stat.num_children == 0 && stat.data_length == 0 => {
                    if let Some(key) = self.layout.key_of_dir(&dir) {
                        self.reclaimer.schedule(&key);
                    }
                    return;
                }
                _ => return,
            }
            if self
                .call("prune", client.delete(&dir, Some(0)))
                .await
                .is_err()
            {
                return;
            }
            match dir.rfind('/') {
                Some(at) => dir.truncate(at),
                None => return,
            }
        }
    }

    /// Checks a TTL against the capabilities and ZooKeeper's largest TTL.
    fn checked_ttl(&self, ttl: Duration) -> Result<Duration> {
        let ttl = self.capabilities.check_ttl(ttl)?;
        if ttl.as_millis() > MAX_TTL_MS {
            return Err(Error::invalid_argument(format!(
                "ZooKeeper TTLs are at most {MAX_TTL_MS} ms"
            )));
        }
        Ok(ttl)
    }
}

/// Runs a call with a timeout, leaving its ZooKeeper error to the caller.
pub(crate) async fn timed_raw<T, E>(
    operation: &'static str,
    after: Duration,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<std::result::Result<T, E>> {
    tokio::time::timeout(after, call)
        .await
        .map_err(|_| Error::Timeout { operation, after })
}

/// A zxid as a kv version.
pub(crate) fn version_of(zxid: i64) -> u64 {
    u64::try_from(zxid).unwrap_or(0)
}

impl fmt::Debug for ZooKeeperStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZooKeeperStore")
            .field("url", &self.inner.shown)
            .finish()
    }
}

#[async_trait]
impl Store for ZooKeeperStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    async fn put_opts(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        let key = self.inner.key(key)?;
        self.inner.capabilities.check_put(&options)?;
        self.inner.write(key, value, &options).await
    }

    async fn get(&self, key: &str) -> Result<Option<KvPair>> {
        let key = self.inner.key(key)?;
        self.inner
            .read("get", || async {
                let client = self.inner.client().await?;
                let state = self
                    .inner
                    .caught_up(&client, self.inner.read_value(&client, key))
                    .await?;
                Ok(state.live().map(|node| KvPair {
                    key: Key::from_normalized(key),
                    value: node.stored.value.clone(),
                    version: version_of(node.stat.mzxid),
                }))
            })
            .await
    }

    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        let key = self.inner.key(key)?;
        Ok(matches!(
            self.inner.remove(key, options.version).await?,
            Removal::Removed { live: true }
        ))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let key = self.inner.key(key)?;
        self.inner
            .read("exists", || async {
                let client = self.inner.client().await?;
                let state = self
                    .inner
                    .caught_up(&client, self.inner.read_value(&client, key))
                    .await?;
                Ok(state.live().is_some())
            })
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        let prefix = self.inner.closed.prefix(prefix)?;
        self.inner
            .read("list", || async {
                let client = self.inner.client().await?;
                let walk = tree::walk(&self.inner, &client, prefix);
                Ok(self.inner.caught_up(&client, walk).await?.pairs())
            })
            .await
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>> {
        let prefix = self.inner.closed.prefix(prefix)?;
        self.inner
            .read("list_children", || async {
                let client = self.inner.client().await?;
                let children = tree::children(&self.inner, &client, prefix);
                self.inner.caught_up(&client, children).await
            })
            .await
    }

    async fn delete_tree(&self, prefix: &str) -> Result<u64> {
        let prefix = self.inner.closed.prefix(prefix)?;
        let client = self.inner.client().await?;
        tree::delete(&self.inner, &client, prefix, true).await
    }

    /// Every key, the guards deletes leave for the reclaimer (epoch nodes; the native layout's
    /// hollow nodes and markers) and the emptied lock directory: nothing of this store stays.
    async fn purge(&self) -> Result<()> {
        self.inner.closed.check_open()?;
        let client = self.inner.client().await?;
        tree::delete(&self.inner, &client, "", false).await?;
        let layout = &self.inner.layout;
        let markers = self
            .inner
            .call("purge", client.list_children(&layout.hollow_dir()))
            .await
            .unwrap_or_default();
        let deletes = markers
            .iter()
            .map(|name| client.delete(&format!("{}/{name}", layout.hollow_dir()), None))
            .collect::<Vec<_>>();
        let _ = tokio::time::timeout(self.inner.timeout, futures::future::join_all(deletes)).await;
        for dir in [
            layout.hollow_dir(),
            layout.locks(),
            layout.base().to_owned(),
        ] {
            let _ = timed_raw("purge", self.inner.timeout, client.delete(&dir, None)).await;
        }
        Ok(())
    }

    async fn grant(&self, ttl: Duration) -> Result<kv_core::Lease> {
        self.inner.closed.check_open()?;
        let ttl = self.inner.capabilities.check_grant(ttl)?;
        lease::grant(&self.inner, ttl).await
    }

    async fn attach_lease(&self, _id: &str) -> Result<kv_core::Lease> {
        self.inner.closed.check_open()?;
        self.inner.capabilities.check_attach()?;
        Err(self.inner.capabilities.unsupported("attach_leases"))
    }

    async fn txn(&self, txn: Txn) -> Result<Vec<TxnOpResult>> {
        self.inner.closed.check_open()?;
        let txn = txn.check(&self.inner.capabilities)?;
        self.inner.txn(&txn).await
    }

    async fn watch_opts(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        let watched = match options.tree {
            true => self.inner.closed.prefix(key)?,
            false => self.inner.key(key)?,
        };
        watch::start(self.inner.clone(), watched, options).await
    }

    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        let key = self.inner.key(key)?;
        lock::ZooKeeperLock::boxed(
            self.inner.clone(),
            Key::from_normalized(key),
            options.scope == LockScope::Subtree,
            options,
        )
    }

    async fn close(&self) -> Result<()> {
        if !self.inner.closed.begin_close() {
            return Ok(());
        }
        for (path, client) in self.inner.held.take_all() {
            let _ = timed("unlock", self.inner.timeout, client.delete(&path, None)).await;
        }
        for session in self.inner.leases.take_all() {
            // Not confirmed: its keys go with its session, within the TTL.
            let _ = session.end(&self.inner).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn io_errors_are_recognized_bare_and_behind_an_arc() {
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(super::is_io(&reset()));
        let shared: std::sync::Arc<dyn std::error::Error + Send + Sync> =
            std::sync::Arc::new(reset());
        assert!(super::is_io(&shared));
        assert!(!super::is_io(&std::fmt::Error));
    }

    #[test]
    fn a_connection_that_stopped_answering_is_recognized() {
        // zookeeper-client's words (session/mod.rs) when a frozen server sends nothing.
        assert!(super::names_a_silent_connection(
            "no response from connection in 1000ms"
        ));
        assert!(!super::names_a_silent_connection("node exists"));
    }
}
