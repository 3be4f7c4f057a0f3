//! **kv**: one Rust API for coordination data — keys, watches, leases and locks — over
//! etcd, Consul, ZooKeeper, Redis, SQLite, sled and an in-memory namespace.
//!
//! Write your service once against [`Store`]; pick the backend with a URL and a Cargo feature:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kv::Result<()> {
//! use kv::{LockOptions, PutOptions, WatchOptions};
//! use futures::StreamExt;
//!
//! let store = kv::open("memory://").await?;
//! store.put("app/config/color", b"blue", PutOptions::default()).await?;
//! let pair = store.get("app/config/color").await?.expect("just written");
//! assert_eq!(pair.value, "blue");
//!
//! let mut events = store.watch_tree("app/config", WatchOptions::default()).await?;
//! let first = events.next().await.expect("the current state comes first")?;
//! assert_eq!(first.key.as_str(), "app/config/color");
//!
//! let lock = store.new_lock("app/leader", LockOptions::default()).await?;
//! let guard = lock.acquire().await?;
//! println!("leading with fencing token {}", guard.fencing_token());
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! | scheme | feature | backend |
//! |---|---|---|
//! | `memory://[name]` | `memory` (default) | in-process reference backend |
//! | `sqlite:///path/kv.db`, `sqlite://./path/kv.db` | `sqlite` | embedded, shared by the processes of a machine |
//! | `sled:///path`, `sled://./path` | `sled` | embedded, persistent, one process at a time |
//! | `etcd://host:2379[,host...][/root]` | `etcd` | etcd v3 (3.4+) |
//! | `redis://[user:pass@]host:6379[/db][?root=...]`, `redis+sentinel://host:26379[,host...]/service` | `redis` | Redis 6.2+, or its primary named by Sentinel |
//! | `consul://host:8500[/root][?token=...]`, `consuls://` | `consul` | Consul 1.8+ |
//! | `zookeeper://[user:pass@]host:2181[,host...][/base]` | `zookeeper` | ZooKeeper 3.6+ (TTL nodes on) |

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, RwLock};

// The user-facing API; backend-author plumbing stays in `kv::backend`.
pub use kv_core::{
    BoxError, Bytes, CallRecord, CancellationToken, Capabilities, Child, Condition,
    DEFAULT_RECIPE_TTL, Election, Error, EventKind, HostPort, Key, KvPair, LeaderStream,
    Leadership, Lease, Limiter, Lock, LockGuard, LockHolder, LockOptions, LockScope, MAX_KEY_BYTES,
    MetricsHook, Permit, Precondition, Prefix, PrefixStore, PutOptions, Registered, Registration,
    Result, Secret, Store, StoreExt, StoreUrl, Term, Tls, TracedStore, TtlSupport, Txn,
    TxnOpResult, UPDATE_ATTEMPTS, Validity, WatchEvent, WatchOptions, WatchStream, backend, covers,
    normalize, normalize_key,
};

// Each backend's own API, for configuring a store in code instead of a URL (typed options, TLS
// from PEM bytes, a client of your own): `kv::etcd::EtcdOptions::new([...]).connect()`.
/// The Consul backend: [`consul::ConsulOptions`], [`consul::ConsulStore::with_client`].
#[cfg(feature = "consul")]
pub use kv_consul as consul;
/// The etcd backend: [`etcd::EtcdOptions`], [`etcd::EtcdStore::with_channel`], [`etcd::proto`].
#[cfg(feature = "etcd")]
pub use kv_etcd as etcd;
/// The in-memory reference backend.
#[cfg(feature = "memory")]
pub use kv_memory as memory;
/// The Redis backend: [`redis::RedisOptions`] (also over a `redis::Client` of your own).
#[cfg(feature = "redis")]
pub use kv_redis as redis;
/// The embedded sled backend: [`sled::SledOptions`].
#[cfg(feature = "sled")]
pub use kv_sled as sled;
/// The embedded SQLite backend: [`sqlite::SqliteOptions`].
#[cfg(feature = "sqlite")]
pub use kv_sqlite as sqlite;
/// The ZooKeeper backend: [`zookeeper::ZooKeeperOptions`].
#[cfg(feature = "zookeeper")]
pub use kv_zookeeper as zookeeper;

/// The future an [`Opener`] returns.
pub type Opening = Pin<Box<dyn Future<Output = Result<Arc<dyn Store>>> + Send + 'static>>;

/// What [`register`] takes: opens a store for a parsed URL of the registered scheme.
pub type Opener = fn(StoreUrl) -> Opening;

/// Schemes registered by other crates, and how to open them.
static REGISTERED: LazyLock<RwLock<HashMap<String, Opener>>> = LazyLock::new(Default::default);

/// Makes [`open`] open `scheme://` URLs with `opener`: how a backend crate outside this
/// workspace joins `kv::open` (call it once at startup). The built-in schemes cannot be
/// replaced (`InvalidArgument`); registering a scheme again replaces its opener.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv::Result<()> {
/// use std::sync::Arc;
/// fn open_mine(url: kv::StoreUrl) -> kv::Opening {
///     // A real backend would connect to url.hosts here.
///     Box::pin(async move { kv::open(&format!("memory://{}", url.hosts[0].host)).await })
/// }
/// kv::register("mine", open_mine)?;
/// let store = kv::open("mine://demo").await?;
/// # Ok(()) }
/// ```
pub fn register(scheme: &str, opener: Opener) -> Result<()> {
    if SCHEMES.iter().any(|(s, _)| *s == scheme) {
        return Err(Error::invalid_argument(format!(
            "{scheme}:// is a built-in scheme of kv and cannot be registered again"
        )));
    }
    StoreUrl::parse(&format!("{scheme}://x"))?;
    REGISTERED
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(scheme.to_owned(), opener);
    Ok(())
}

/// The schemes registered with [`register`].
pub fn registered_schemes() -> Vec<String> {
    let mut schemes: Vec<String> = REGISTERED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .cloned()
        .collect();
    schemes.sort();
    schemes
}

/// URL schemes of every backend, with the Cargo feature that compiles it in.
const SCHEMES: &[(&str, &str)] = &[
    ("memory", "memory"),
    ("sqlite", "sqlite"),
    ("sled", "sled"),
    ("etcd", "etcd"),
    ("etcds", "etcd"),
    ("redis", "redis"),
    ("rediss", "redis"),
    ("redis+sentinel", "redis"),
    ("rediss+sentinel", "redis"),
    ("consul", "consul"),
    ("consuls", "consul"),
    ("zookeeper", "zookeeper"),
    ("zookeepers", "zookeeper"),
];

/// Opens the store a URL names, with the backend its scheme selects.
///
/// Unknown schemes, and schemes whose backend feature is not enabled, fail with
/// [`Error::InvalidUrl`] saying what to do.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_url(&StoreUrl::parse(url)?).await
}

/// Opens the store `KV_STORE` names (as `kvctl` does), else `default`: one binary, pointed at
/// a laptop's embedded store or a cluster by its environment.
///
/// ```no_run
/// # async fn demo() -> kv::Result<()> {
/// let store = kv::open_env("memory://app").await?; // KV_STORE=etcd://10.0.0.1:2379/app in production
/// # Ok(()) }
/// ```
pub async fn open_env(default: &str) -> Result<Arc<dyn Store>> {
    match std::env::var("KV_STORE") {
        Ok(url) if !url.trim().is_empty() => open(url.trim()).await,
        _ => open(default).await,
    }
}

/// Opens the store of a parsed URL; see [`open`]. Every call of the store it returns runs in
/// a `tracing` span ([`TracedStore`]).
pub async fn open_url(url: &StoreUrl) -> Result<Arc<dyn Store>> {
    let store = open_backend(url).await?;
    Ok(Arc::new(TracedStore::new(store)))
}

/// The backend's store itself, without the tracing wrapper.
async fn open_backend(url: &StoreUrl) -> Result<Arc<dyn Store>> {
    let scheme = url.scheme.as_str();
    let backend = SCHEMES.iter().find(|(s, _)| *s == scheme).map(|(_, b)| *b);
    match backend {
        #[cfg(feature = "memory")]
        Some("memory") => Ok(Arc::new(kv_memory::MemoryStore::from_url(url)?)),
        #[cfg(feature = "sqlite")]
        Some("sqlite") => Ok(Arc::new(kv_sqlite::SqliteStore::from_url(url).await?)),
        #[cfg(feature = "sled")]
        Some("sled") => Ok(Arc::new(kv_sled::SledStore::from_url(url)?)),
        #[cfg(feature = "etcd")]
        Some("etcd") => Ok(Arc::new(kv_etcd::EtcdStore::from_url(url).await?)),
        #[cfg(feature = "redis")]
        Some("redis") => Ok(Arc::new(kv_redis::RedisStore::from_url(url).await?)),
        #[cfg(feature = "consul")]
        Some("consul") => Ok(Arc::new(kv_consul::ConsulStore::from_url(url).await?)),
        #[cfg(feature = "zookeeper")]
        Some("zookeeper") => Ok(Arc::new(kv_zookeeper::ZooKeeperStore::from_url(url).await?)),
        Some(feature) => Err(Error::invalid_url(format!(
            "the {scheme}:// backend is not compiled in; enable the `{feature}` feature of the kv crate (package `coordkv`)"
        ))),
        None => {
            let opener = REGISTERED
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(scheme)
                .copied();
            match opener {
                Some(opener) => opener(url.clone()).await,
                None => Err(Error::invalid_url(format!(
                    "unknown scheme {scheme}://; known schemes: {}",
                    SCHEMES
                        .iter()
                        .map(|(s, _)| (*s).to_owned())
                        .chain(registered_schemes())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}

/// The schemes [`open`] can open in this build.
pub fn compiled_schemes() -> Vec<&'static str> {
    let compiled: &[&str] = &[
        #[cfg(feature = "memory")]
        "memory",
        #[cfg(feature = "sqlite")]
        "sqlite",
        #[cfg(feature = "sled")]
        "sled",
        #[cfg(feature = "etcd")]
        "etcd",
        #[cfg(feature = "redis")]
        "redis",
        #[cfg(feature = "consul")]
        "consul",
        #[cfg(feature = "zookeeper")]
        "zookeeper",
    ];
    compiled.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn registered_schemes_open_through_kv_open() {
        fn open_tenant(url: StoreUrl) -> Opening {
            Box::pin(async move {
                let name = url.hosts.first().map_or("", |h| h.host.as_str()).to_owned();
                let store: Arc<dyn Store> = Arc::new(kv_memory::MemoryStore::open(&format!(
                    "memory://tenant-{name}"
                ))?);
                Ok(store)
            })
        }
        let err = open("tenant://acme").await.unwrap_err().to_string();
        assert!(err.contains("unknown scheme"), "{err}");
        register("tenant", open_tenant).unwrap();
        assert!(registered_schemes().contains(&"tenant".to_owned()));
        let store = open("tenant://acme").await.unwrap();
        store.put("k", b"v", PutOptions::default()).await.unwrap();
        let again = open("tenant://acme").await.unwrap();
        assert_eq!(again.get("k").await.unwrap().unwrap().value, "v");
        assert!(matches!(
            register("etcd", open_tenant),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[tokio::test]
    async fn unknown_and_missing_backends_say_what_to_do() {
        // Every scheme whose backend this build leaves out names the feature to enable (CI
        // builds the crate with no backend and with each one alone, so each is checked).
        for (scheme, feature) in SCHEMES {
            if compiled_schemes().contains(feature) {
                continue;
            }
            let err = open(&format!("{scheme}://127.0.0.1:1/x"))
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::InvalidUrl { .. })
                    && err.to_string().contains(&format!("`{feature}` feature")),
                "{scheme}: {err}"
            );
        }
        let err = open("ftp://x").await.unwrap_err();
        assert!(err.to_string().contains("unknown scheme ftp://"), "{err}");
        let err = open("not a url").await.unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }));
    }

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn opens_memory() {
        let store = open("memory://").await.unwrap();
        assert_eq!(store.capabilities().backend, "memory");
        assert!(compiled_schemes().contains(&"memory"));
    }
}
