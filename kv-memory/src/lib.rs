//! The in-memory reference backend of **kv**: a hierarchical namespace with watches, TTLs,
//! watch history, and key and subtree locks with expiring leases. Every other backend must
//! behave like this one; it passes the whole conformance suite with every capability.
//!
//! URLs: `memory://` is private to the handle; `memory://NAME` is shared by every handle opened
//! with that name in this process, for as long as one of them is open (not dropped). Options:
//! `history=N` (events kept for `WatchOptions::since`, default 10000; `0` disables history),
//! `max_value_bytes=N` (default 16 MiB). A named namespace keeps the options it was created with.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kv_core::Result<()> {
//! use kv_core::{PutOptions, Store};
//! let store = kv_memory::MemoryStore::open("memory://")?;
//! store.put("app/color", b"blue", PutOptions::default()).await?;
//! assert_eq!(store.get("/app/color/").await?.unwrap().value, "blue");
//! # Ok(()) }
//! ```

mod history;
pub mod journal;
mod lease;
mod lock;
mod namespace;
mod state;
mod tree;
mod watch;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use kv_core::backend::{Driver, HandleState, Locality, Opening};
use kv_core::{
    CancellationToken, Capabilities, Child, DeleteOptions, Error, Key, KvPair, Lease, Lock,
    LockOptions, PutOptions, Result, Store, StoreUrl, Txn, TxnOpResult, WatchOptions, WatchStream,
};

use crate::lock::MemoryLock;
use crate::namespace::Namespace;
use crate::state::State;
use crate::tree::Now;
use crate::watch::MemoryWatch;

/// Events kept for `WatchOptions::since` unless `history=N` says otherwise.
pub const DEFAULT_HISTORY: usize = 10_000;
/// Largest value unless `max_value_bytes=N` says otherwise.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// What a durable namespace is made of; see [`MemoryStore::open_durable`].
pub struct Durable {
    /// The backend's capabilities (`watch_history` is set from `history`).
    pub capabilities: Capabilities,
    /// Events kept for `WatchOptions::since` (from the open on; 0 disables history).
    pub history: usize,
    /// Where every change is recorded before it is applied.
    pub journal: Arc<dyn journal::Journal>,
    /// The state to start from.
    pub recovered: journal::Recovered,
}

/// `memory://[name]`: this backend as `kv::open` and the tools know it.
pub const DRIVER: Driver =
    Driver::new("memory", &["memory"], Locality::Process, open_driver).with_scratch(scratch);

fn open_driver(url: StoreUrl) -> Opening {
    Box::pin(async move { Ok(Arc::new(MemoryStore::from_url(&url)?) as Arc<dyn Store>) })
}

/// A fresh named namespace.
fn scratch(_: &StoreUrl, leaf: &str) -> Result<StoreUrl> {
    StoreUrl::parse(&format!("memory://{leaf}"))
}

/// A handle on an in-memory namespace. Cheap to share as `Arc<dyn Store>`.
pub struct MemoryStore {
    namespace: Arc<Namespace>,
    /// The registry id of a shared namespace (`memory:NAME`, `durable:ID`).
    shared_id: Option<String>,
    /// Identifies this handle's locks, released on close.
    id: u64,
    /// Fires on close: ends this handle's watches and lock waits.
    closed: HandleState,
}

impl MemoryStore {
    /// Opens `memory://` (a private namespace) or `memory://NAME` (shared in this process).
    pub fn open(url: &str) -> Result<MemoryStore> {
        Self::from_url(&StoreUrl::parse(url)?)
    }

    /// Opens a parsed `memory://` URL.
    pub fn from_url(url: &StoreUrl) -> Result<MemoryStore> {
        if url.scheme != "memory" {
            return Err(Error::invalid_url(format!(
                "kv-memory opens memory:// URLs, not {}://",
                url.scheme
            )));
        }
        url.check_options(&["history", "max_value_bytes"])?;
        if url.username.is_some() || url.password.is_some() || !url.path.is_empty() {
            return Err(Error::invalid_url(
                "memory:// takes only a namespace name: memory:// or memory://NAME",
            ));
        }
        let name = match url.hosts.as_slice() {
            [] => None,
            [host] if host.port.is_none() => Some(host.host.clone()),
            _ => {
                return Err(Error::invalid_url(
                    "memory:// takes one namespace name without a port: memory://NAME",
                ));
            }
        };
        let history = url.parse_option("history")?.unwrap_or(DEFAULT_HISTORY);
        let max_value = url
            .parse_option("max_value_bytes")?
            .unwrap_or(DEFAULT_MAX_VALUE_BYTES);
        let create = || {
            let mut capabilities = Capabilities::full("memory", max_value);
            capabilities.watch_history = history > 0;
            Namespace::new(capabilities, State::new(history))
        };
        match name {
            Some(name) => Self::shared(format!("memory:{name}"), create),
            None => Ok(Self::handle(create()?, None)),
        }
    }

    /// Opens a handle on the durable namespace `id` (for example a store's canonical path),
    /// creating it with `create` if no handle in this process has it open. Handles on one id
    /// share data, watches and locks. This is how `kv-sled` is built.
    pub fn open_durable(id: &str, create: impl FnOnce() -> Result<Durable>) -> Result<MemoryStore> {
        Self::shared(format!("durable:{id}"), || {
            let durable = create()?;
            let mut capabilities = durable.capabilities;
            capabilities.watch_history = durable.history > 0;
            let state = State::recover(durable.history, durable.journal, durable.recovered);
            Namespace::new(capabilities, state)
        })
    }

    fn shared(id: String, create: impl FnOnce() -> Result<Arc<Namespace>>) -> Result<MemoryStore> {
        let namespace = namespace::open_shared(&id, create)?;
        Ok(Self::handle(namespace, Some(id)))
    }

    fn handle(namespace: Arc<Namespace>, shared_id: Option<String>) -> MemoryStore {
        static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);
        MemoryStore {
            namespace,
            shared_id,
            id: NEXT_HANDLE.fetch_add(1, Ordering::Relaxed),
            closed: HandleState::default(),
        }
    }

    fn write(&self, key: &str, value: &[u8], options: &PutOptions) -> Result<u64> {
        let precondition = options.precondition;
        let key = self.closed.key(key)?;
        let caps = &self.namespace.capabilities;
        caps.check_value(value.len())?;
        let lease = options
            .lease
            .as_ref()
            .map(|lease| lease::own(lease, &self.namespace))
            .transpose()?;
        let expires_at = caps
            .check_put(options)?
            .map(|ttl| {
                Instant::now()
                    .checked_add(ttl)
                    .ok_or_else(|| Error::invalid_argument(format!("TTL {ttl:?} is too large")))
            })
            .transpose()?;
        let version = self.namespace.state.write().put(
            key,
            Bytes::copy_from_slice(value),
            expires_at,
            lease,
            precondition,
            &Now::lazy(),
        )?;
        if expires_at.is_some() {
            self.namespace.wake_timers();
        }
        Ok(version)
    }

    async fn open_watch(&self, path: &str, options: WatchOptions) -> Result<WatchStream> {
        let recursive = options.tree;
        self.namespace.capabilities.check_watch(&options)?;
        let mut registration = self.namespace.state.write().watch(
            path,
            recursive,
            options.since,
            options.buffer,
            &Now::lazy(),
        )?;
        registration.initial = kv_core::backend::initial_events(
            std::mem::take(&mut registration.initial),
            path,
            &options,
        );
        Ok(Box::pin(MemoryWatch::new(
            self.namespace.clone(),
            path.to_owned(),
            registration,
            options.buffer,
            CancellationToken::clone(&self.closed).cancelled_owned(),
        )))
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("namespace", &self.shared_id)
            .field("closed", &self.closed.is_cancelled())
            .finish()
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn capabilities(&self) -> &Capabilities {
        &self.namespace.capabilities
    }

    async fn put_opts(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        self.write(key, value, &options)
    }

    async fn get(&self, key: &str) -> Result<Option<KvPair>> {
        let key = self.closed.key(key)?;
        Ok(self.namespace.state.read().get(key, &Now::lazy()))
    }

    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        let key = self.closed.key(key)?;
        self.namespace
            .state
            .write()
            .delete(key, options.version, &Now::lazy())
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let key = self.closed.key(key)?;
        Ok(self.namespace.state.read().exists(key, &Now::lazy()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        let prefix = self.closed.prefix(prefix)?;
        Ok(self.namespace.state.read().list(prefix, &Now::lazy()))
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>> {
        let prefix = self.closed.prefix(prefix)?;
        Ok(self
            .namespace
            .state
            .read()
            .list_children(prefix, &Now::lazy()))
    }

    async fn delete_tree(&self, prefix: &str) -> Result<u64> {
        let prefix = self.closed.prefix(prefix)?;
        self.namespace
            .state
            .write()
            .delete_tree(prefix, &Now::lazy())
    }

    async fn grant(&self, ttl: Duration) -> Result<Lease> {
        self.closed.check_open()?;
        let ttl = self.namespace.capabilities.check_grant(ttl)?;
        lease::grant(&self.namespace, self.id, ttl)
    }

    async fn attach_lease(&self, id: &str) -> Result<Lease> {
        self.closed.check_open()?;
        self.namespace.capabilities.check_attach()?;
        let lease = lease::attach(&self.namespace, id, self.closed.child_token())?;
        Ok(kv_core::backend::lost_on_close(lease, &self.closed))
    }

    async fn txn(&self, txn: Txn) -> Result<Vec<TxnOpResult>> {
        self.closed.check_open()?;
        let txn = txn.check(&self.namespace.capabilities)?;
        self.namespace.state.write().txn(&txn, &Now::lazy())
    }

    async fn watch_opts(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        let watched = self.closed.watched(key, &options)?;
        self.open_watch(watched, options).await
    }

    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        self.closed.check_open()?;
        let key = Key::parse(key)?;
        let ttl = self.namespace.capabilities.check_ttl(options.ttl)?;
        Instant::now()
            .checked_add(ttl)
            .ok_or_else(|| Error::invalid_argument(format!("lock TTL {ttl:?} is too large")))?;
        Ok(Box::new(MemoryLock {
            namespace: self.namespace.clone(),
            key,
            options: options.ttl(ttl),
            owner: self.id,
            closed: CancellationToken::clone(&self.closed),
        }))
    }

    async fn close(&self) -> Result<()> {
        self.closed.cancel();
        let mut state = self.namespace.state.write();
        if state.release_owner(self.id) {
            self.namespace.lock_freed.notify_waiters();
        }
        state.revoke_owner(self.id)?;
        state.flush()
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        if let Some(id) = &self.shared_id {
            namespace::close_shared(id);
        }
    }
}
