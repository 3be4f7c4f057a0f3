//! [`TracedStore`]: a `tracing` span around every call of another store.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::Instrument;

use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::store::{Store, WatchStream};
use crate::txn::{Txn, TxnOpResult};
use crate::types::{
    Child, DeleteOptions, KvPair, LockOptions, Precondition, PutOptions, WatchOptions,
};

/// Wraps a store so that every call runs in a `debug` span of target `kv` named `kv`, with
/// fields `backend`, `op` and `key` (the key or prefix as given) — never a value, and errors
/// (whose messages never hold secrets) as a `debug` event in the span. `kv::open` returns stores
/// wrapped this way: `RUST_LOG=kv=debug` shows them with any `tracing` subscriber. Costs a
/// callsite check per call when nothing listens.
///
/// [`TracedStore::with_metrics`] adds a hook called after every call with its backend,
/// operation, duration and outcome: feed it to any metrics library.
///
/// ```
/// # fn demo(store: std::sync::Arc<dyn kv_core::Store>) {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// let failures = std::sync::Arc::new(AtomicU64::new(0));
/// let counted = failures.clone();
/// let store = kv_core::TracedStore::new(store).with_metrics(move |call| {
///     if call.error.is_some() {
///         counted.fetch_add(1, Ordering::Relaxed);
///     }
/// });
/// # }
/// ```
pub struct TracedStore {
    inner: Arc<dyn Store>,
    metrics: Option<MetricsHook>,
}

/// One finished call of a [`TracedStore`], for its metrics hook.
#[derive(Debug)]
#[non_exhaustive]
pub struct CallRecord<'a> {
    /// The backend's name.
    pub backend: &'static str,
    /// The operation (`put`, `get`, `txn`, `watch`, ...).
    pub op: &'static str,
    /// How long the call took.
    pub elapsed: Duration,
    /// Its error, if it failed.
    pub error: Option<&'a Error>,
}

/// A metrics hook: called after every call of a [`TracedStore`].
pub type MetricsHook = Arc<dyn Fn(&CallRecord<'_>) + Send + Sync>;

impl TracedStore {
    /// Traces the calls of `inner`.
    pub fn new(inner: Arc<dyn Store>) -> TracedStore {
        TracedStore {
            inner,
            metrics: None,
        }
    }

    /// Also calls `hook` after every call (on the caller's task: keep it quick).
    pub fn with_metrics(
        mut self,
        hook: impl Fn(&CallRecord<'_>) + Send + Sync + 'static,
    ) -> TracedStore {
        self.metrics = Some(Arc::new(hook));
        self
    }

    async fn traced<T>(
        &self,
        op: &'static str,
        key: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let backend = self.inner.capabilities().backend;
        let span = tracing::debug_span!(target: "kv", "kv", backend, op, key);
        let started = self.metrics.as_ref().map(|_| Instant::now());
        async move {
            let result = call.await;
            if let Err(error) = &result {
                tracing::debug!(target: "kv", %error, "failed");
            }
            if let (Some(hook), Some(started)) = (&self.metrics, started) {
                hook(&CallRecord {
                    backend,
                    op,
                    elapsed: started.elapsed(),
                    error: result.as_ref().err(),
                });
            }
            result
        }
        .instrument(span)
        .await
    }
}

impl fmt::Debug for TracedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Store for TracedStore {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &str) -> Result<Option<KvPair>> {
        self.traced("get", key, self.inner.get(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        self.traced("list", prefix, self.inner.list(prefix)).await
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>> {
        self.traced("list_children", prefix, self.inner.list_children(prefix))
            .await
    }

    async fn put_opts(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        let op = match options.precondition {
            Some(_) => "atomic_put",
            None => "put",
        };
        self.traced(op, key, self.inner.put_opts(key, value, options))
            .await
    }

    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        let op = match options.version {
            Some(_) => "atomic_delete",
            None => "delete",
        };
        self.traced(op, key, self.inner.delete_opts(key, options))
            .await
    }

    async fn delete_tree(&self, prefix: &str) -> Result<u64> {
        self.traced("delete_tree", prefix, self.inner.delete_tree(prefix))
            .await
    }

    async fn watch_opts(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        let op = match options.tree {
            true => "watch_tree",
            false => "watch",
        };
        self.traced(op, key, self.inner.watch_opts(key, options))
            .await
    }

    async fn close(&self) -> Result<()> {
        self.traced("close", "", self.inner.close()).await
    }

    async fn put(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        self.traced("put", key, self.inner.put(key, value, options))
            .await
    }

    async fn atomic_put(
        &self,
        key: &str,
        value: &[u8],
        precondition: Precondition,
        options: PutOptions,
    ) -> Result<u64> {
        let call = self.inner.atomic_put(key, value, precondition, options);
        self.traced("atomic_put", key, call).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.traced("delete", key, self.inner.delete(key)).await
    }

    async fn atomic_delete(&self, key: &str, version: u64) -> Result<()> {
        self.traced("atomic_delete", key, self.inner.atomic_delete(key, version))
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.traced("exists", key, self.inner.exists(key)).await
    }

    async fn watch(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        self.traced("watch", key, self.inner.watch(key, options))
            .await
    }

    async fn watch_tree(&self, prefix: &str, options: WatchOptions) -> Result<WatchStream> {
        self.traced("watch_tree", prefix, self.inner.watch_tree(prefix, options))
            .await
    }

    async fn grant(&self, ttl: std::time::Duration) -> Result<crate::Lease> {
        self.traced("grant", "", self.inner.grant(ttl)).await
    }

    async fn attach_lease(&self, id: &str) -> Result<crate::Lease> {
        self.traced("attach_lease", "", self.inner.attach_lease(id))
            .await
    }

    async fn txn(&self, txn: Txn) -> Result<Vec<TxnOpResult>> {
        let key = txn.first_key().to_owned();
        self.traced("txn", &key, self.inner.txn(txn)).await
    }

    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        self.traced("new_lock", key, self.inner.new_lock(key, options))
            .await
    }

    async fn purge(&self) -> Result<()> {
        self.traced("purge", "", self.inner.purge()).await
    }
}
