//! The Consul backend of **kv** (Consul 1.8+), on Consul's HTTP API through `reqwest`.
//!
//! - URL: `consul://host:8500[,host:8500...][/root][?token=...&timeout=5s]`; `consuls://` or `tls=true` for
//!   HTTPS, with `ca=PATH` (PEM; else the system roots) and `cert=PATH&key=PATH` for client
//!   certificates. The token goes in the `X-Consul-Token` header; it never appears in `Debug`,
//!   `Display` or errors. `session_ttl_min=10s` states the servers' shortest session TTL
//!   (otherwise read from the agent's `/v1/agent/self`, or, without `agent:read`, learned from
//!   a 1 ns session the servers refuse).
//! - Several agents (`consul://local:8500,other:8500/root`): calls go to the first until it
//!   cannot be reached, cannot reach a server, or leaves a read unanswered for half the call's
//!   timeout (a hung server behind it), then to the next (the `api` module's `send`).
//! - Opening needs no leader (a stale read checks the agent and the token), and a 500 that
//!   means "nothing was done" (no leader during an election, a node not yet registered) is
//!   retried within the call's timeout.
//! - Consul keys are flat strings; kv keys map to `root/key` and every prefix operation is
//!   bounded by segments (`app` never lists `apple`). The layout is in the `layout` module.
//! - Every write is one `/v1/txn` transaction, which returns the new version (the entry's
//!   `ModifyIndex`) and makes CAS, `delete_tree` and lock acquisition atomic.
//! - TTL keys are attached to a session with `Behavior=delete` that Consul ends after the TTL;
//!   the expiry time travels in the key's `Flags`, so readers and watches drop the key at its
//!   TTL even though Consul deletes it up to a session TTL later.
//! - Watches are blocking queries turned into Put/Delete events by comparing snapshots: a
//!   watch may coalesce intermediate versions (`watch_coalesces`) and keeps no history.
//! - Locks: a lock key acquired by a session in one transaction that checks every lock that
//!   could conflict; the session is renewed in the background and `lost()` fires when it ends.

mod api;
mod layout;
mod lease;
mod lock;
mod options;

pub use options::ConsulOptions;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kv_core::backend::{Driver, HandleState, Holdings, Locality, Opening, TxnOp as TxnOpKind};
use kv_core::{
    Capabilities, Child, DeleteOptions, Error, Key, KvPair, Lock, LockOptions, LockScope,
    Precondition, PutOptions, Result, Store, StoreUrl, TtlSupport, Txn, TxnOpResult, WatchOptions,
    WatchStream,
};

use crate::api::{Api, Entry, SessionSpec, TxnOp};
use crate::layout::{Layout, expiry_flags, now_ms};

/// Reads and commits of one [`Store::txn`] before giving up on keys that keep changing.
const TXN_ATTEMPTS: usize = 5;
/// Conditions plus operations per transaction: each key takes a check and a put up to two
/// operations (delete, set) in Consul's transaction of at most 64.
const MAX_TXN_OPS: usize = api::MAX_TXN_OPS / 3;

/// Default timeout of every call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest value: Consul limits a transaction's body to 512 KiB (`txn_max_req_len`) and values
/// travel base64-encoded, so 380 KiB is what fits with the key and the other operations.
/// Raise it with `max_value_bytes=N` on a server configured with a larger `txn_max_req_len`.
pub const MAX_VALUE_BYTES: usize = 380 * 1024;
/// Consul's longest session TTL; a TTL key's session lives half its TTL, so TTLs up to twice
/// this are accepted.
const MAX_SESSION_TTL: Duration = Duration::from_secs(24 * 3600);
/// Consul's minimum session TTL when the server does not say (its default).
const DEFAULT_SESSION_TTL_MIN: Duration = Duration::from_secs(10);

/// `consul://host:8500[/root]`: this backend as `kv::open` and the tools know it.
pub const DRIVER: Driver = Driver::new(
    "consul",
    &["consul", "consuls"],
    Locality::Server,
    open_driver,
);

fn open_driver(url: StoreUrl) -> Opening {
    Box::pin(async move { Ok(Arc::new(ConsulStore::from_url(&url).await?) as Arc<dyn Store>) })
}

/// A handle on a Consul agent. Cheap to share as `Arc<dyn Store>`.
pub struct ConsulStore {
    inner: Arc<Inner>,
}

/// What the store, its watches and locks share.
pub(crate) struct Inner {
    pub api: Api,
    pub layout: Layout,
    pub capabilities: Capabilities,
    pub closed: HandleState,
    /// Shortest session TTL the server accepts.
    pub session_ttl_min: Duration,
    /// Lock sessions held through this handle and their `lost` tokens, ended on close.
    pub held: Holdings<String>,
    shown: String,
}

impl ConsulStore {
    /// Connects to the agent a `consul://` URL names.
    pub async fn open(url: &str) -> Result<ConsulStore> {
        Self::from_url(&StoreUrl::parse(url)?).await
    }

    /// Connects to the agent of a parsed URL.
    pub async fn from_url(url: &StoreUrl) -> Result<ConsulStore> {
        ConsulOptions::from_url(url)?.connect().await
    }

    /// A store over an HTTP client you configured yourself (TLS from PEM bytes, proxies,
    /// middleware-free `reqwest`): the agent at `agent` (`http://host:8500`), keys under `root`
    /// (`""`: no root), the ACL `token` if any, calls limited to `timeout`. Fails, as `open`
    /// does, when the agent does not answer or refuses the token.
    ///
    /// ```no_run
    /// # async fn demo() -> kv_core::Result<()> {
    /// let http = reqwest::Client::new();
    /// let store = kv_consul::ConsulStore::with_client(
    ///     http, "http://127.0.0.1:8500", "app", None, kv_consul::DEFAULT_TIMEOUT,
    /// ).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_client(
        http: reqwest::Client,
        agent: &str,
        root: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<ConsulStore> {
        let root = kv_core::Prefix::parse(root)?;
        let api = Api::new(
            http,
            vec![agent.trim_end_matches('/').to_owned()],
            token,
            timeout,
        )?;
        let shown = format!(
            "consul at {agent} (a client given, root {:?})",
            root.as_str()
        );
        Self::over(api, &root, MAX_VALUE_BYTES, None, shown).await
    }

    /// The store over `api`, once the agent answers.
    pub(crate) async fn over(
        api: Api,
        root: &kv_core::Prefix,
        max_value_bytes: usize,
        session_ttl_min: Option<Duration>,
        shown: String,
    ) -> Result<ConsulStore> {
        let layout = Layout::new(root.as_str());
        // Fail at open when the agent is unreachable or refuses the token, with a read any
        // server can answer (no leader needed: an open during an election works).
        let probe = match layout.data_key("") {
            root if root.is_empty() => layout.all_locks(),
            root => root,
        };
        api.probe(probe.trim_end_matches('/')).await?;
        // The shortest session TTL: from the URL, else the agent's config, else (a token
        // without agent:read) from a 1 ns session the servers refuse.
        let session_ttl_min = match session_ttl_min {
            Some(min) => min,
            None => match api.agent_session_ttl_min().await? {
                Some(min) => min,
                None => match api.session_ttl_min().await {
                    Ok(min) => min.unwrap_or(DEFAULT_SESSION_TTL_MIN),
                    Err(Error::Auth { .. }) => DEFAULT_SESSION_TTL_MIN,
                    Err(e) => return Err(e),
                },
            },
        };
        let mut capabilities = Capabilities::full("consul", max_value_bytes);
        // Without a root, `delete_tree("")` goes in transactions of 64 operations.
        capabilities.atomic_delete_tree = !layout.data_key("").is_empty();
        capabilities.watch_history = false;
        capabilities.watch_coalesces = true;
        capabilities.max_txn_ops = MAX_TXN_OPS;
        capabilities.ttl = Some(TtlSupport {
            min: session_ttl_min,
            granularity: Duration::from_millis(1),
        });
        Ok(ConsulStore {
            inner: Arc::new(Inner {
                api,
                layout,
                capabilities,
                closed: HandleState::default(),
                session_ttl_min,
                held: Holdings::default(),
                shown,
            }),
        })
    }
}

/// One rustls provider (aws-lc-rs) for the whole workspace; roots from `ca` or the system.
pub(crate) fn tls_config(tls: Option<&kv_core::Tls>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn fmt::Display| Error::invalid_url(format!("{what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca.as_ref()) {
        Some(ca) => {
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| bad("the CA (ca) is not PEM", &e))?;
                roots
                    .add(cert)
                    .map_err(|e| bad("the CA (ca) holds a bad certificate", &e))?;
            }
        }
        None if tls.is_some() => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
        None => {}
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Backend(Box::new(e)))?
    .with_root_certificates(roots);
    match tls.and_then(|t| t.identity.as_ref()) {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad("the client certificate (cert) is not PEM", &e))?;
            let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                .map_err(|e| bad("the client key (key) is not a PEM private key", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("the client certificate and key do not match", &e))
        }
    }
}

impl Inner {
    /// The checks every call on a key makes first.
    fn key<'a>(&self, key: &'a str) -> Result<&'a str> {
        let key = self.closed.key(key)?;
        self.layout.check_key(key)?;
        Ok(key)
    }

    /// The checks every call on a prefix makes first.
    fn prefix<'a>(&self, prefix: &'a str) -> Result<&'a str> {
        let prefix = self.closed.prefix(prefix)?;
        self.layout.check_key(prefix)?;
        Ok(prefix)
    }

    /// Drops a session from the handle's list of those to end on close.
    pub fn forget(&self, session: &str) {
        self.held.forget(|held| held == session);
    }

    /// The session TTL that makes Consul delete a key `ttl` after its write: Consul ends a
    /// session between one and two session TTLs after its last renewal.
    pub fn session_ttl(&self, ttl: Duration) -> Duration {
        (ttl / 2).max(self.session_ttl_min)
    }

    /// The current entry of a key, with expired TTL keys treated as absent.
    async fn entry(&self, key: &str) -> Result<Option<Entry>> {
        let read = self
            .api
            .read("get", &self.layout.data_key(key), false, None)
            .await?;
        Ok(read.entries.into_iter().find(|e| !e.expired(now_ms())))
    }

    /// Writes a key (replacing any TTL session it had) if the options' precondition holds; returns
    /// the new version.
    async fn write(&self, key: &str, value: &[u8], options: &PutOptions) -> Result<u64> {
        let precondition = options.precondition;
        self.capabilities.check_value(value.len())?;
        let ttl = self.capabilities.check_put(options)?;
        if let Some(ttl) = ttl
            && self.session_ttl(ttl) > MAX_SESSION_TTL
        {
            return Err(Error::invalid_argument(format!(
                "TTL {ttl:?} is above Consul's maximum of {:?}",
                MAX_SESSION_TTL * 2
            )));
        }
        if precondition == Some(Precondition::Version(0)) {
            return Err(Error::conflict(key, "no key has version 0"));
        }
        if let Some(lease) = &options.lease {
            let session = lease::session_of(lease)?;
            return self
                .write_with(key, value, precondition, None, Some(session))
                .await;
        }
        let session = match ttl {
            Some(ttl) => Some(
                self.api
                    .create_session(&SessionSpec {
                        ttl: self.session_ttl(ttl),
                        name: "kv ttl",
                    })
                    .await?,
            ),
            None => None,
        };
        let written = self
            .write_with(key, value, precondition, ttl, session.as_deref())
            .await;
        if let (Err(_), Some(session)) = (&written, &session) {
            let _ = self.api.destroy_session(session).await;
        }
        written
    }

    async fn write_with(
        &self,
        key: &str,
        value: &[u8],
        mut precondition: Option<Precondition>,
        ttl: Option<Duration>,
        session: Option<&str>,
    ) -> Result<u64> {
        let consul_key = self.layout.data_key(key);
        // One retry: a MustNotExist that failed on a key whose TTL has passed but that Consul
        // has not deleted yet becomes a check of that stale version.
        for _ in 0..2 {
            let mut ops = Vec::with_capacity(3);
            match precondition {
                None => {}
                Some(Precondition::MustNotExist) => ops.push(TxnOp::check_not_exists(&consul_key)),
                Some(Precondition::Version(v)) => ops.push(TxnOp::check_index(&consul_key, v)),
            }
            // Deleting first detaches the key from any earlier TTL session.
            ops.push(TxnOp::delete(&consul_key));
            ops.push(TxnOp::set(&consul_key, value, expiry_flags(ttl), session));
            match self.api.txn("put", &ops).await? {
                Ok(entries) => {
                    // The check's entry comes first with the old index; the write's is last.
                    return entries
                        .iter()
                        .rfind(|e| e.key == consul_key)
                        .map(|e| e.modify_index)
                        .ok_or_else(|| {
                            Error::Backend("Consul's transaction returned no entry".into())
                        });
                }
                Err(rollback) => {
                    let stale = match precondition {
                        Some(Precondition::MustNotExist) => self
                            .api
                            .read("put", &consul_key, false, None)
                            .await?
                            .entries
                            .into_iter()
                            .find(|e| e.expired(now_ms())),
                        _ => None,
                    };
                    match stale {
                        Some(entry) => {
                            precondition = Some(Precondition::Version(entry.modify_index))
                        }
                        None => return Err(Error::conflict(key, rollback.what)),
                    }
                }
            }
        }
        Err(Error::conflict(key, "the key exists"))
    }

    /// A transaction: read every key it names, check the conditions on what is visible, then
    /// commit in one `/v1/txn` that first checks each key is unchanged since the read
    /// (`check-index` / `check-not-exists`), so the conditions still hold when it applies. A
    /// key changed in between means reading again: at once a few times, then with growing
    /// pauses until the call's budget is spent — then `Unavailable` (nothing applied), never
    /// `Conflict`, which says a condition failed.
    async fn txn(&self, txn: Txn) -> Result<Vec<TxnOpResult>> {
        self.closed.check_open()?;
        let txn = txn.check(&self.capabilities)?;
        let keys = txn.keys();
        for key in &keys {
            self.layout.check_key(key.as_str())?;
        }
        let mut budget = kv_core::backend::Budget::new(self.api.timeout);
        while budget.attempt(TXN_ATTEMPTS).await {
            let reads = keys.iter().map(|key| async move {
                let consul_key = self.layout.data_key(key.as_str());
                let read = self.api.read("txn", &consul_key, false, None).await?;
                let entry = read.entries.into_iter().find(|e| e.key == consul_key);
                Ok::<_, Error>(((*key).clone(), (consul_key, entry)))
            });
            let read: HashMap<Key, (String, Option<Entry>)> =
                futures_util::future::try_join_all(reads)
                    .await?
                    .into_iter()
                    .collect();
            let now = now_ms();
            let visible = |key: &Key| -> Option<&Entry> {
                read.get(key)?.1.as_ref().filter(|e| !e.expired(now))
            };
            txn.check_conditions(|key| visible(key).map(|e| (&e.value[..], e.modify_index)))?;
            let mut ops = Vec::with_capacity(3 * keys.len());
            for (consul_key, entry) in read.values() {
                ops.push(match entry {
                    Some(entry) => TxnOp::check_index(consul_key, entry.modify_index),
                    None => TxnOp::check_not_exists(consul_key),
                });
            }
            let mut results = Vec::with_capacity(txn.ops.len());
            for op in &txn.ops {
                let (consul_key, entry) = &read[op.key()];
                match op {
                    TxnOpKind::Put { value, .. } => {
                        if entry.as_ref().is_some_and(|e| e.session.is_some()) {
                            // Detaches the key from its TTL session, as a put does.
                            ops.push(TxnOp::delete(consul_key));
                        }
                        ops.push(TxnOp::set(consul_key, value, 0, None));
                        results.push(None);
                    }
                    TxnOpKind::Delete { key } => {
                        if entry.is_some() {
                            ops.push(TxnOp::delete(consul_key));
                        }
                        results.push(Some(TxnOpResult::Delete {
                            existed: visible(key).is_some(),
                        }));
                    }
                }
            }
            let Ok(entries) = self.api.txn("txn", &ops).await? else {
                continue;
            };
            // Entries come back for the checks (old indexes) and the sets (the new one, the
            // highest).
            let version = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
            return Ok(results
                .into_iter()
                .map(|r| r.unwrap_or(TxnOpResult::Put { version }))
                .collect());
        }
        Err(Error::unavailable(
            format!(
                "the transaction's keys kept changing under other writers for {:?} ({} \
                 attempts); nothing was applied: try again",
                budget.total(),
                budget.attempts()
            ),
            None,
        ))
    }

    /// The visible pairs of a transaction's or read's entries that `prefix` covers, sorted.
    fn pairs(&self, entries: Vec<Entry>, prefix: &str) -> Vec<KvPair> {
        let now = now_ms();
        let mut pairs: Vec<KvPair> = entries
            .into_iter()
            .filter(|e| !e.expired(now))
            .filter_map(|e| {
                let key = self.layout.kv_key(&e.key, prefix)?;
                Some(KvPair {
                    key: Key::from_normalized(key),
                    value: e.value,
                    version: e.modify_index,
                })
            })
            .collect();
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        pairs.dedup_by(|a, b| a.key == b.key);
        pairs
    }

    /// The raw Consul prefix whose keys include every key `prefix` covers (and siblings that
    /// share its characters, filtered out by [`Layout::kv_key`]).
    pub fn raw_prefix(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            self.layout.below("")
        } else {
            self.layout.data_key(prefix)
        }
    }
}

impl fmt::Debug for ConsulStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulStore")
            .field("url", &self.inner.shown)
            .finish()
    }
}

#[async_trait]
impl Store for ConsulStore {
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
        Ok(self.inner.entry(key).await?.map(|e| KvPair {
            key: Key::from_normalized(key),
            value: e.value,
            version: e.modify_index,
        }))
    }

    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        let key = self.inner.key(key)?;
        let consul_key = self.inner.layout.data_key(key);
        let Some(version) = options.version else {
            let ops = [TxnOp::get(&consul_key), TxnOp::delete(&consul_key)];
            return match self.inner.api.txn("delete", &ops).await? {
                Ok(entries) => Ok(entries.iter().any(|e| !e.expired(now_ms()))),
                Err(_) => Ok(false),
            };
        };
        let ops = [
            TxnOp::get(&consul_key),
            TxnOp::check_index(&consul_key, version),
            TxnOp::delete(&consul_key),
        ];
        match self.inner.api.txn("atomic_delete", &ops).await? {
            Ok(entries) if entries.iter().all(|e| !e.expired(now_ms())) => Ok(true),
            Ok(_) => Err(Error::conflict(key, "the key's TTL had passed")),
            Err(rollback) => Err(Error::conflict(
                key,
                format!("expected version {version}: {}", rollback.what),
            )),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let key = self.inner.key(key)?;
        Ok(self.inner.entry(key).await?.is_some())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        let prefix = self.inner.prefix(prefix)?;
        let read = self
            .inner
            .api
            .read("list", &self.inner.raw_prefix(prefix), true, None)
            .await?;
        Ok(self.inner.pairs(read.entries, prefix))
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>> {
        let prefix = self.inner.prefix(prefix)?;
        let below = self.inner.layout.below(prefix);
        let mut children: Vec<Child> = Vec::new();
        for raw in self.inner.api.keys(&below).await? {
            let (consul_key, is_dir) = match raw.strip_suffix('/') {
                Some(dir) => (dir, true),
                None => (raw.as_str(), false),
            };
            let Some(key) = self.inner.layout.kv_key(consul_key, prefix) else {
                continue;
            };
            if key == prefix {
                continue;
            }
            children.push(Child {
                key: Key::from_normalized(key),
                has_value: !is_dir,
                has_children: is_dir,
            });
        }
        children.sort_by(|a, b| a.key.cmp(&b.key));
        children.dedup_by(|a, b| {
            if a.key == b.key {
                b.has_value |= a.has_value;
                b.has_children |= a.has_children;
                true
            } else {
                false
            }
        });
        Ok(children)
    }

    async fn delete_tree(&self, prefix: &str) -> Result<u64> {
        let prefix = self.inner.prefix(prefix)?;
        let inner = &self.inner;
        if prefix.is_empty() && inner.layout.data_key("").is_empty() {
            return delete_everything(inner).await;
        }
        let raw = inner.raw_prefix(prefix);
        let mut ops = vec![
            TxnOp::get_tree(&raw),
            TxnOp::delete_tree(&inner.layout.below(prefix)),
        ];
        if !prefix.is_empty() {
            ops.push(TxnOp::delete(&raw));
        }
        match inner.api.txn("delete_tree", &ops).await? {
            Ok(entries) => Ok(inner.pairs(entries, prefix).len() as u64),
            Err(rollback) => Err(Error::Backend(
                format!("Consul rolled back delete_tree: {}", rollback.what).into(),
            )),
        }
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
        let watched = match options.tree {
            true => self.inner.prefix(key)?,
            false => self.inner.key(key)?,
        };
        watch::start(self.inner.clone(), watched, options).await
    }

    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        let key = self.inner.key(key)?;
        lock::ConsulLock::boxed(
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
        for session in self.inner.held.take_all() {
            let _ = self.inner.api.destroy_session(&session).await;
        }
        Ok(())
    }
}

/// `delete_tree("")` without a root: every kv key of the agent, in transactions of Consul's
/// operation limit (not atomic as a whole when there are more keys than that).
async fn delete_everything(inner: &Inner) -> Result<u64> {
    let read = inner.api.read("delete_tree", "", true, None).await?;
    let now = now_ms();
    let mut removed = 0;
    let doomed: Vec<Entry> = read
        .entries
        .into_iter()
        .filter(|e| inner.layout.kv_key(&e.key, "").is_some())
        .collect();
    for batch in doomed.chunks(api::MAX_TXN_OPS) {
        let ops: Vec<TxnOp> = batch.iter().map(|e| TxnOp::delete(&e.key)).collect();
        if let Err(rollback) = inner.api.txn("delete_tree", &ops).await? {
            return Err(Error::Backend(
                format!("Consul rolled back delete_tree: {}", rollback.what).into(),
            ));
        }
        removed += batch.iter().filter(|e| !e.expired(now)).count() as u64;
    }
    Ok(removed)
}
