//! [`PrefixStore`]: a handle scoped to one subtree of another store.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_core::Stream;

use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::key::{Key, Prefix};
use crate::lock::{Lock, LockGuard, LockHolder};
use crate::store::{Store, WatchStream};
use crate::txn::{Txn, TxnOpResult};
use crate::types::{
    Child, DeleteOptions, EventKind, KvPair, LockOptions, PutOptions, WatchEvent, WatchOptions,
};

/// A store that sees only the keys below `prefix` of another store, with `prefix/` taken off
/// (the key `a` here is `prefix/a` there): tenants or components that share one connection
/// each get their own namespace. Keys, listings, watch events and locks are all relative.
///
/// The key `prefix` itself is outside the scope: no scoped key names it, and `delete_tree("")`
/// leaves it alone — one atomic `delete_tree(prefix)` when it holds no value, else one
/// `delete_tree` per child of the scope (a value written at `prefix` between the check and the
/// delete goes with the tree). [`Store::close`] closes the wrapped handle, which every
/// `PrefixStore` on it shares.
///
/// ```
/// # async fn demo(shared: std::sync::Arc<dyn kv_core::Store>) -> kv_core::Result<()> {
/// use kv_core::{PrefixStore, PutOptions, Store};
/// let tenant = PrefixStore::new(shared.clone(), "tenants/acme")?;
/// tenant.put("config/color", b"blue", PutOptions::default()).await?;
/// assert!(shared.get("tenants/acme/config/color").await?.is_some());
/// assert_eq!(tenant.list("").await?[0].key.as_str(), "config/color");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PrefixStore {
    inner: Arc<dyn Store>,
    prefix: Key,
    /// The wrapped store's, with the key limit shortened by `prefix/`.
    capabilities: Arc<Capabilities>,
}

impl PrefixStore {
    /// Scopes `inner` to the subtree `prefix` (a key: not empty, normalized like any key).
    /// Scoped keys are shorter by `prefix/`: [`Capabilities::max_key_bytes`] says how long.
    pub fn new(inner: Arc<dyn Store>, prefix: &str) -> Result<PrefixStore> {
        let prefix = Key::parse(prefix)?;
        let mut capabilities = inner.capabilities().clone();
        capabilities.max_key_bytes = capabilities
            .max_key_bytes
            .checked_sub(prefix.as_str().len() + 1)
            .filter(|left| *left > 0)
            .ok_or_else(|| Error::InvalidKey {
                key: prefix.as_str().chars().take(64).collect(),
                reason: "too long to be a prefix: no key would fit below it",
            })?;
        Ok(PrefixStore {
            inner,
            prefix,
            capabilities: Arc::new(capabilities),
        })
    }

    /// The subtree this store is scoped to.
    pub fn prefix(&self) -> &Key {
        &self.prefix
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// The wrapped store's key for a scoped key (validated first, so errors name the input).
    fn outer_key(&self, key: &str) -> Result<String> {
        let key = Key::parse(key)?;
        self.capabilities.check_key(key.as_str())?;
        Ok(format!("{}/{}", self.prefix.as_str(), key.as_str()))
    }

    /// The wrapped store's prefix for a scoped prefix (`""`: the whole scope).
    fn outer_prefix(&self, prefix: &str) -> Result<String> {
        let prefix = Prefix::parse(prefix)?;
        Ok(match prefix.as_str() {
            "" => self.prefix.as_str().to_owned(),
            relative => format!("{}/{relative}", self.prefix.as_str()),
        })
    }

    /// The scoped key of a key of the wrapped store; `None` for the prefix key itself (or
    /// anything outside the scope).
    fn inner_key(&self, key: &Key) -> Option<Key> {
        let rest = key.as_str().strip_prefix(self.prefix.as_str())?;
        rest.strip_prefix('/').map(Key::from_normalized)
    }

    fn scoped_pairs(&self, pairs: Vec<KvPair>) -> Vec<KvPair> {
        pairs
            .into_iter()
            .filter_map(|pair| {
                Some(KvPair {
                    key: self.inner_key(&pair.key)?,
                    ..pair
                })
            })
            .collect()
    }

    fn scoped_watch(&self, stream: WatchStream) -> WatchStream {
        Box::pin(ScopedWatch {
            inner: stream,
            scope: self.clone(),
        })
    }
}

impl fmt::Debug for PrefixStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefixStore")
            .field("prefix", &self.prefix)
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait]
impl Store for PrefixStore {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn put_opts(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        self.inner
            .put_opts(&self.outer_key(key)?, value, options)
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<KvPair>> {
        let pair = self.inner.get(&self.outer_key(key)?).await?;
        Ok(pair.and_then(|pair| {
            Some(KvPair {
                key: self.inner_key(&pair.key)?,
                ..pair
            })
        }))
    }

    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        self.inner.delete_opts(&self.outer_key(key)?, options).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(&self.outer_key(key)?).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        let pairs = self.inner.list(&self.outer_prefix(prefix)?).await?;
        Ok(self.scoped_pairs(pairs))
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>> {
        let children = self
            .inner
            .list_children(&self.outer_prefix(prefix)?)
            .await?;
        Ok(children
            .into_iter()
            .filter_map(|child| {
                Some(Child {
                    key: self.inner_key(&child.key)?,
                    ..child
                })
            })
            .collect())
    }

    async fn delete_tree(&self, prefix: &str) -> Result<u64> {
        let outer = self.outer_prefix(prefix)?;
        // `outer` is the prefix itself only for the whole scope.
        if outer != self.prefix.as_str() || !self.inner.exists(self.prefix.as_str()).await? {
            return self.inner.delete_tree(&outer).await;
        }
        // The whole scope, while the prefix key itself (outside it) holds a value: each child's
        // subtree in turn, which is not one atomic step.
        let mut deleted = 0;
        for child in self.inner.list_children(&outer).await? {
            deleted += self.inner.delete_tree(child.key.as_str()).await?;
        }
        Ok(deleted)
    }

    async fn grant(&self, ttl: std::time::Duration) -> Result<crate::Lease> {
        self.inner.grant(ttl).await
    }

    async fn attach_lease(&self, id: &str) -> Result<crate::Lease> {
        self.inner.attach_lease(id).await
    }

    async fn txn(&self, txn: Txn) -> Result<Vec<TxnOpResult>> {
        let txn = txn.map_keys(|key| self.outer_key(key))?;
        self.inner.txn(txn).await.map_err(|error| match error {
            Error::Conflict { key, reason } => Error::Conflict {
                key: self
                    .inner_key(&Key::from_normalized(&key))
                    .map_or(key, |inner| inner.as_str().to_owned()),
                reason,
            },
            other => other,
        })
    }

    async fn watch_opts(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        let outer = match options.tree {
            true => self.outer_prefix(key)?,
            false => self.outer_key(key)?,
        };
        let stream = self.inner.watch_opts(&outer, options).await?;
        Ok(self.scoped_watch(stream))
    }

    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        let inner = self.inner.new_lock(&self.outer_key(key)?, options).await?;
        Ok(Box::new(ScopedLock {
            key: Key::parse(key)?,
            inner,
        }))
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// A watch of the wrapped store with its events' keys made relative (events on the prefix key
/// itself are outside the scope and skipped).
struct ScopedWatch {
    inner: WatchStream,
    scope: PrefixStore,
}

impl Stream for ScopedWatch {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => match self.scope.inner_key(&event.key) {
                    Some(key) => Poll::Ready(Some(Ok(WatchEvent { key, ..event }))),
                    // The marker of a watch of the whole scope names the prefix itself.
                    None if event.kind == EventKind::Synced => Poll::Ready(Some(Ok(WatchEvent {
                        key: Key::watched(""),
                        ..event
                    }))),
                    None => continue,
                },
                other => other,
            };
        }
    }
}

/// A lock of the wrapped store under its scoped key.
#[derive(Debug)]
struct ScopedLock {
    key: Key,
    inner: Box<dyn Lock>,
}

#[async_trait]
impl Lock for ScopedLock {
    fn key(&self) -> &Key {
        &self.key
    }

    async fn acquire(&self) -> Result<LockGuard> {
        Ok(self.inner.acquire().await?.with_key(self.key.clone()))
    }

    async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        let guard = self.inner.try_acquire().await?;
        Ok(guard.map(|guard| guard.with_key(self.key.clone())))
    }

    async fn holder(&self) -> Result<Option<LockHolder>> {
        self.inner.holder().await
    }
}
