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
//! Each backend is a Cargo feature of this crate (`memory` is on by default); [`DRIVERS`] lists
//! them with their URL schemes. Each backend crate is also a module here (`kv::etcd`, ...) with
//! its typed options, for configuring a store in code instead of a URL.

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

pub use kv_core::backend::{Driver, Locality, Opening};

/// Lists the backends this crate knows, one line each — its Cargo feature, crate, module name,
/// URL schemes and what it is — as [`DRIVERS`] (those compiled in, documented with the whole
/// table), the module re-exports, and `FEATURES` (every one's feature and schemes, so a URL of a
/// backend left out names the feature to enable; a test checks them against the drivers').
/// Adding a backend is one line here.
macro_rules! drivers {
    ($($feature:literal => $krate:ident as $module:ident [$($scheme:literal),+] $what:literal),+ $(,)?) => {
        /// The drivers of the backends compiled into this build, in this order:
        ///
        /// | feature | schemes | backend |
        /// |---|---|---|
        $(#[doc = concat!("| `", $feature, "` | ", $("`", $scheme, "://` ",)+ "| ", $what, " |")])+
        pub const DRIVERS: &[&Driver] = &[$(#[cfg(feature = $feature)] &$krate::DRIVER),+];

        /// Every built-in backend's Cargo feature and URL schemes.
        const FEATURES: &[(&str, &[&str])] = &[$(($feature, &[$($scheme),+])),+];

        $(
            #[doc = concat!("The ", $feature, " backend's own API (typed options): ", $what, ".")]
            #[cfg(feature = $feature)]
            pub use $krate as $module;
        )+
    };
}

drivers! {
    "memory" => kv_memory as memory ["memory"]
        "in-process reference backend: `memory://[name]`",
    "sqlite" => kv_sqlite as sqlite ["sqlite"]
        "embedded, shared by the processes of a machine: `sqlite:///path/kv.db`, `sqlite://./path/kv.db`",
    "sled" => kv_sled as sled ["sled"]
        "embedded, persistent, one process at a time: `sled:///path`, `sled://./path`",
    "etcd" => kv_etcd as etcd ["etcd", "etcds"]
        "etcd v3 (3.4+): `etcd://host:2379[,host...][/root]`",
    "redis" => kv_redis as redis ["redis", "rediss", "redis+sentinel", "rediss+sentinel"]
        "Redis 6.2+, or its primary named by Sentinel: `redis://[user:pass@]host:6379[/db][?root=...]`, `redis+sentinel://host:26379[,host...]/service`",
    "consul" => kv_consul as consul ["consul", "consuls"]
        "Consul 1.8+: `consul://host:8500[/root][?token=...]`",
    "zookeeper" => kv_zookeeper as zookeeper ["zookeeper", "zookeepers"]
        "ZooKeeper 3.6+ (TTL nodes on): `zookeeper://[user:pass@]host:2181[,host...][/base]`",
}

/// Drivers registered by other crates.
static REGISTERED: LazyLock<RwLock<Vec<Driver>>> = LazyLock::new(Default::default);

/// Makes [`open`] (and the tools) open the URLs of `driver`'s schemes: how a backend crate
/// outside this workspace joins `kv::open` (call it once at startup); [`open`] then walks it
/// as it walks the built-in drivers. The built-in schemes cannot be taken over
/// (`InvalidArgument`); registering a driver of a registered scheme again replaces it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kv::Result<()> {
/// use kv::{Driver, Locality, Opening, StoreUrl};
/// fn open_mine(url: StoreUrl) -> Opening {
///     // A real backend would connect to url.hosts here.
///     Box::pin(async move { kv::open(&format!("memory://{}", url.hosts[0].host)).await })
/// }
/// kv::register(Driver::new("mine", &["mine"], Locality::Server, open_mine))?;
/// let store = kv::open("mine://demo").await?;
/// # Ok(()) }
/// ```
pub fn register(driver: Driver) -> Result<()> {
    for scheme in driver.schemes() {
        if FEATURES.iter().any(|(_, schemes)| schemes.contains(scheme)) {
            return Err(Error::invalid_argument(format!(
                "{scheme}:// is a built-in scheme of kv and cannot be registered again"
            )));
        }
        StoreUrl::parse(&format!("{scheme}://x"))?;
    }
    let mut registered = REGISTERED.write().unwrap_or_else(|p| p.into_inner());
    registered.retain(|known| !known.schemes().iter().any(|s| driver.opens(s)));
    registered.push(driver);
    Ok(())
}

/// The schemes registered with [`register`], sorted.
pub fn registered_schemes() -> Vec<String> {
    let registered = REGISTERED.read().unwrap_or_else(|p| p.into_inner());
    let mut schemes: Vec<String> = registered
        .iter()
        .flat_map(|driver| driver.schemes().iter().map(|s| (*s).to_owned()))
        .collect();
    schemes.sort();
    schemes
}

/// The driver that opens `scheme://` URLs in this build: a compiled-in one, else a registered
/// one.
pub fn driver_for(scheme: &str) -> Option<Driver> {
    find_driver(|driver| driver.opens(scheme))
}

/// The driver of the backend named `name` ([`Capabilities::backend`]) in this build.
pub fn driver_named(name: &str) -> Option<Driver> {
    find_driver(|driver| driver.name() == name)
}

/// The first compiled-in driver, else registered one, that `matches`.
fn find_driver(matches: impl Fn(&Driver) -> bool) -> Option<Driver> {
    if let Some(driver) = DRIVERS.iter().find(|driver| matches(driver)) {
        return Some(**driver);
    }
    let registered = REGISTERED.read().unwrap_or_else(|p| p.into_inner());
    registered.iter().find(|driver| matches(driver)).copied()
}

/// The driver that opens `url`, or the [`Error::InvalidUrl`] that says what to do: enable the
/// Cargo feature of a known backend left out of this build, or use a known scheme.
pub fn driver(url: &StoreUrl) -> Result<Driver> {
    let scheme = url.scheme.as_str();
    if let Some(driver) = driver_for(scheme) {
        return Ok(driver);
    }
    if let Some((feature, _)) = FEATURES.iter().find(|(_, s)| s.contains(&scheme)) {
        return Err(Error::invalid_url(format!(
            "the {scheme}:// backend is not compiled in; enable the `{feature}` feature of the kv crate (package `coordkv`)"
        )));
    }
    let known: Vec<String> = FEATURES
        .iter()
        .flat_map(|(_, schemes)| schemes.iter().map(|s| (*s).to_owned()))
        .chain(registered_schemes())
        .collect();
    Err(Error::invalid_url(format!(
        "unknown scheme {scheme}://; known schemes: {}",
        known.join(", ")
    )))
}

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

/// Opens the store of a parsed URL with its [`driver`]; see [`open`]. Every call of the store
/// it returns runs in a `tracing` span ([`TracedStore`]).
pub async fn open_url(url: &StoreUrl) -> Result<Arc<dyn Store>> {
    let store = driver(url)?.open(url.clone()).await?;
    Ok(Arc::new(TracedStore::new(store)))
}

/// The names of the backends [`open`] can open in this build (without registered ones).
pub fn compiled_schemes() -> Vec<&'static str> {
    DRIVERS.iter().map(|driver| driver.name()).collect()
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
        register(Driver::new(
            "tenant",
            &["tenant"],
            Locality::Server,
            open_tenant,
        ))
        .unwrap();
        assert!(registered_schemes().contains(&"tenant".to_owned()));
        let store = open("tenant://acme").await.unwrap();
        store.put("k", b"v", PutOptions::default()).await.unwrap();
        let again = open("tenant://acme").await.unwrap();
        assert_eq!(again.get("k").await.unwrap().unwrap().value, "v");
        assert!(matches!(
            register(Driver::new(
                "tenant",
                &["tenant", "etcd"],
                Locality::Server,
                open_tenant
            )),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[tokio::test]
    async fn unknown_and_missing_backends_say_what_to_do() {
        // Every scheme whose backend this build leaves out names the feature to enable (CI
        // builds the crate with no backend and with each one alone, so each is checked).
        for (feature, schemes) in FEATURES {
            if compiled_schemes().contains(feature) {
                continue;
            }
            for scheme in *schemes {
                let err = open(&format!("{scheme}://127.0.0.1:1/x"))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, Error::InvalidUrl { .. })
                        && err.to_string().contains(&format!("`{feature}` feature")),
                    "{scheme}: {err}"
                );
            }
        }
        let err = open("ftp://x").await.unwrap_err();
        assert!(err.to_string().contains("unknown scheme ftp://"), "{err}");
        let err = open("not a url").await.unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }));
    }

    #[test]
    fn the_table_names_each_drivers_own_schemes() {
        for driver in DRIVERS {
            let listed = FEATURES
                .iter()
                .find(|(feature, _)| *feature == driver.name());
            assert_eq!(
                listed.map(|(_, schemes)| *schemes),
                Some(driver.schemes()),
                "{}",
                driver.name()
            );
        }
    }

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn opens_memory() {
        let store = open("memory://").await.unwrap();
        assert_eq!(store.capabilities().backend, "memory");
        assert!(compiled_schemes().contains(&"memory"));
    }
}
