//! [`Restricted`]: a store with capabilities switched off, so that the suite's gated branches
//! run on a backend that has the capabilities (the reference backend, in its tests).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use kv_core::{
    Capabilities, Child, DeleteOptions, Error, KvPair, Lock, LockOptions, LockScope, PutOptions,
    Result, Store, Txn, TxnOpResult, WatchOptions, WatchStream,
};

/// Wraps a store and declares fewer capabilities than it has: a call that needs one that is
/// switched off fails with [`kv_core::Error::Unsupported`] (or the TTL/watch checks of the
/// reduced [`Capabilities`]) as on a backend without it; everything else goes through.
/// Weaker claims (`watch_coalesces`, `atomic_delete_tree` false) only change what the suite
/// asserts.
pub struct Restricted {
    inner: Arc<dyn Store>,
    capabilities: Capabilities,
    /// Set by `close`: a closed handle says `Closed` before any capability check, as every
    /// backend must.
    closed: AtomicBool,
}

impl Restricted {
    /// `inner` with the capabilities `restrict` leaves.
    pub fn new(inner: Arc<dyn Store>, restrict: impl FnOnce(&mut Capabilities)) -> Restricted {
        let mut capabilities = inner.capabilities().clone();
        restrict(&mut capabilities);
        Restricted {
            inner,
            capabilities,
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<()> {
        match self.closed.load(Ordering::SeqCst) {
            true => Err(Error::Closed),
            false => Ok(()),
        }
    }

    fn check_put(&self, options: &PutOptions) -> Result<()> {
        self.check_open()?;
        self.capabilities.check_put(options).map(drop)
    }
}

impl fmt::Debug for Restricted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restricted")
            .field("capabilities", &self.capabilities)
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait]
impl Store for Restricted {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn put_opts(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        self.check_put(&options)?;
        self.inner.put_opts(key, value, options).await
    }

    async fn get(&self, key: &str) -> Result<Option<KvPair>> {
        self.inner.get(key).await
    }

    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        self.inner.delete_opts(key, options).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        self.inner.list(prefix).await
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>> {
        self.inner.list_children(prefix).await
    }

    async fn delete_tree(&self, prefix: &str) -> Result<u64> {
        self.inner.delete_tree(prefix).await
    }

    async fn grant(&self, ttl: std::time::Duration) -> Result<kv_core::Lease> {
        self.check_open()?;
        if !self.capabilities.leases {
            return Err(self.capabilities.unsupported("leases"));
        }
        self.inner.grant(ttl).await
    }

    async fn attach_lease(&self, id: &str) -> Result<kv_core::Lease> {
        self.check_open()?;
        self.capabilities.check_attach()?;
        self.inner.attach_lease(id).await
    }

    async fn txn(&self, txn: Txn) -> Result<Vec<TxnOpResult>> {
        self.check_open()?;
        txn.clone().check(&self.capabilities)?;
        self.inner.txn(txn).await
    }

    async fn watch_opts(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        self.check_open()?;
        self.capabilities.check_watch(&options)?;
        self.inner.watch_opts(key, options).await
    }

    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        self.check_open()?;
        if !self.capabilities.locks {
            return Err(self.capabilities.unsupported("locks"));
        }
        if options.scope == LockScope::Subtree && !self.capabilities.subtree_locks {
            return Err(self.capabilities.unsupported("subtree_locks"));
        }
        self.inner.new_lock(key, options).await
    }

    async fn purge(&self) -> Result<()> {
        self.check_open()?;
        self.inner.purge().await
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        self.inner.close().await
    }
}
