//! The contract of **kv**: one async API for coordination data — keys, watches, leases and
//! locks — implemented by every backend (in-memory, SQLite, sled, etcd, Consul, ZooKeeper,
//! Redis).
//!
//! This crate holds no backend code: the [`Store`] and [`Lock`] traits, [`Key`] and [`Prefix`]
//! normalization, [`KvPair`] and [`WatchEvent`], options, [`Capabilities`], the [`Error`] type
//! and [`StoreUrl`] parsing. The rules every backend follows are in `docs/SEMANTICS.md` and are
//! enforced by the `conformance` crate.
//!
//! ```
//! use kv_core::{Key, Prefix};
//! let key = Key::parse("/app/config/color/").unwrap();
//! assert_eq!(key.as_str(), "app/config/color");
//! assert!(Prefix::parse("app").unwrap().covers(&key));
//! ```

mod capabilities;
mod election;
mod error;
mod ext;
pub mod failpoint;
mod grant;
mod handle;
mod key;
mod lease;
mod lock;
mod prefix_store;
mod registration;
mod retry;
mod store;
mod traced;
mod txn;
mod types;
mod url;
mod watch_channel;
mod watch_view;

pub mod backend;

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;
pub use bytes::Bytes;
pub use capabilities::{Capabilities, TtlSupport};
pub use election::{DEFAULT_RECIPE_TTL, Election, LeaderStream, Leadership, Limiter, Permit, Term};
pub use error::{BoxError, Error, Result};
pub use ext::{JsonEvent, JsonWatchStream, StoreExt, UPDATE_ATTEMPTS};
pub use grant::Lease;
pub use key::{Key, MAX_KEY_BYTES, Prefix, covers, normalize, normalize_key};
pub use lease::Validity;
pub use lock::{Lock, LockGuard, LockHolder};
pub use prefix_store::PrefixStore;
pub use registration::{Registered, Registration};
pub use store::{Store, WatchStream};
pub use tokio_util::sync::CancellationToken;
pub use traced::{CallRecord, MetricsHook, TracedStore};
pub use txn::{Condition, Txn, TxnOpResult};
pub use types::{
    Child, DeleteOptions, EventKind, KvPair, LockOptions, LockScope, Precondition, PutOptions,
    WatchEvent, WatchOptions,
};
pub use url::{HostPort, Secret, StoreUrl, Tls};
