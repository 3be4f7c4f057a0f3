//! The [`Store`] trait every backend implements.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures_core::Stream;

use crate::capabilities::Capabilities;
use crate::error::Result;
use crate::lock::Lock;
use crate::txn::{Txn, TxnOpResult};
use crate::types::{
    Child, DeleteOptions, KvPair, LockOptions, Precondition, PutOptions, WatchEvent, WatchOptions,
};

/// A stream of watch events. It ends only after an `Err` item (lag, lost connection, closed
/// store), never silently. Dropping it stops the watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send + 'static>>;

/// One API for coordination data, the same on every backend.
///
/// Keys and prefixes are passed as strings and validated with [`Key::parse`](crate::Key::parse)
/// / [`Prefix::parse`](crate::Prefix::parse) before anything is sent; an invalid one fails with
/// [`Error::InvalidKey`](crate::Error::InvalidKey) and changes nothing. Prefixes are bounded by
/// segments (`app` never covers `apple`); the empty prefix is the whole store. The full contract
/// is in `docs/SEMANTICS.md`.
///
/// Share a store as `Arc<dyn Store>`; every method takes `&self`.
///
/// # Implementing it
/// A backend implements the nine required methods (the `*_opts` ones take every variant of
/// their operation through their options). The conveniences (`put`, `atomic_put`, `delete`,
/// `atomic_delete`, `exists`, `watch`, `watch_tree`) are defined by them and are not meant to
/// be overridden, except `exists` where the backend has a cheaper read. The capability-gated
/// methods (`grant`, `attach_lease`, `txn`, `new_lock`) say
/// [`Error::Unsupported`](crate::Error::Unsupported) unless implemented, as `purge` falls back
/// to `delete_tree("")`. A wrapper forwards what it changes and every gated method; one that
/// forwards everything denies `clippy::missing_trait_methods`.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// What this backend supports and its limits.
    fn capabilities(&self) -> &Capabilities;

    /// Reads a key; `None` if it does not exist (never put, deleted or expired).
    async fn get(&self, key: &str) -> Result<Option<KvPair>>;

    /// Every key the prefix covers (the prefix key itself and everything below), sorted by the
    /// key's bytes. A missing prefix lists empty.
    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>>;

    /// The direct children of a prefix, like a directory listing, sorted by key.
    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>>;

    /// Writes `value` under `key` and returns the new version. With
    /// [`PutOptions::precondition`] it writes only if the precondition holds, else
    /// [`Error::Conflict`](crate::Error::Conflict) and nothing changes.
    async fn put_opts(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64>;

    /// Removes one key (not the keys below it); returns whether it existed. With
    /// [`DeleteOptions::version`] it deletes only if the key exists with exactly that version
    /// (and returns `true`), else [`Error::Conflict`](crate::Error::Conflict) and nothing
    /// changes.
    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool>;

    /// Removes the prefix key and every key below it; returns how many keys were removed.
    async fn delete_tree(&self, prefix: &str) -> Result<u64>;

    /// Watches one key, which need not exist yet, or with [`WatchOptions::tree`] every key a
    /// prefix covers. Starts with the current state (one `Put` per existing key, sorted by key)
    /// unless [`WatchOptions::since`] is set, then delivers live changes with no gap.
    async fn watch_opts(&self, key: &str, options: WatchOptions) -> Result<WatchStream>;

    /// Closes this handle: later calls fail with [`Error::Closed`](crate::Error::Closed), its
    /// watches end with that error, its locks are released and their `lost()` fires. Other
    /// handles on the same data are not affected.
    async fn close(&self) -> Result<()>;

    /// Writes `value` under `key` and returns the new version: [`Store::put_opts`].
    async fn put(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        self.put_opts(key, value, options).await
    }

    /// Writes only if `precondition` holds, else [`Error::Conflict`](crate::Error::Conflict)
    /// and nothing changes. Returns the new version.
    async fn atomic_put(
        &self,
        key: &str,
        value: &[u8],
        precondition: Precondition,
        options: PutOptions,
    ) -> Result<u64> {
        self.put_opts(key, value, options.precondition(precondition))
            .await
    }

    /// Removes one key (not the keys below it); returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool> {
        self.delete_opts(key, DeleteOptions::default()).await
    }

    /// Deletes only if the key exists with exactly `version`, else
    /// [`Error::Conflict`](crate::Error::Conflict) and nothing changes.
    async fn atomic_delete(&self, key: &str, version: u64) -> Result<()> {
        self.delete_opts(key, DeleteOptions::default().version(version))
            .await
            .map(drop)
    }

    /// True if the key holds a value. Path segments that were never put are not keys.
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// Watches one key, which need not exist yet. Starts with the current state (a `Put` if the
    /// key exists) unless [`WatchOptions::since`] is set, then delivers live changes.
    async fn watch(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        let options = WatchOptions {
            tree: false,
            ..options
        };
        self.watch_opts(key, options).await
    }

    /// Watches every key a prefix covers. Starts with one `Put` per existing key (sorted by
    /// key) unless [`WatchOptions::since`] is set, then delivers live changes with no gap.
    async fn watch_tree(&self, prefix: &str, options: WatchOptions) -> Result<WatchStream> {
        self.watch_opts(prefix, options.tree()).await
    }

    /// Grants a lease of `ttl` (checked like a TTL), renewed in the background by this handle
    /// until it is revoked, every clone of it is dropped, or the handle closes. Keys put with
    /// it ([`PutOptions::lease`](crate::PutOptions::lease)) live as long as it does.
    /// `Unsupported("leases")` where [`Capabilities::leases`] is false.
    async fn grant(&self, ttl: std::time::Duration) -> Result<crate::Lease> {
        let _ = ttl;
        Err(self.capabilities().unsupported("leases"))
    }

    /// Takes up renewing the lease `id` ([`Lease::id`](crate::Lease::id) of a lease granted
    /// by another handle or process; `kvctl lease grant` prints one): renews it at once, then
    /// in the background until it is revoked, every clone is dropped or this handle closes —
    /// closing does not revoke a lease this handle did not grant. Keys can be put with it and
    /// [`Lease::revoke`](crate::Lease::revoke) ends it for everyone. `LeaseLost` if the lease
    /// has ended, `InvalidArgument` if `id` cannot name one of this backend's leases,
    /// `Unsupported("attach_leases")` where [`Capabilities::attach_leases`] is false.
    async fn attach_lease(&self, id: &str) -> Result<crate::Lease> {
        let _ = id;
        Err(self.capabilities().unsupported("attach_leases"))
    }

    /// Applies the transaction's puts and deletes all together if every condition holds, else
    /// fails with [`Error::Conflict`](crate::Error::Conflict) naming the first condition that
    /// failed and changes nothing. Returns what each operation did, in order: the version a put
    /// wrote, whether a delete found its key (deleting a missing key is a no-op, no event). The
    /// puts' versions are above every earlier version; they may be equal (one revision, as on
    /// etcd) or increase in operation order. Validated first with [`Txn::check`]:
    /// `Unsupported("transactions")` where [`Capabilities::max_txn_ops`] is 0.
    async fn txn(&self, txn: Txn) -> Result<Vec<TxnOpResult>> {
        txn.check(self.capabilities())?;
        Err(self.capabilities().unsupported("transactions"))
    }

    /// A lock on `key` (or its subtree, per [`LockOptions::scope`]); nothing is taken until
    /// [`Lock::acquire`] or [`Lock::try_acquire`]. `Unsupported("locks")` where
    /// [`Capabilities::locks`] is false.
    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        let _ = (key, options);
        Err(self.capabilities().unsupported("locks"))
    }

    /// Removes everything this store holds under its root — keys and the backend's own
    /// bookkeeping (revision counters, change logs, indexes) — for throwaway namespaces (tests,
    /// `kvctl check`). Versions may start over afterwards: never on a namespace others use.
    /// By default `delete_tree("")`.
    async fn purge(&self) -> Result<()> {
        self.delete_tree("").await.map(drop)
    }
}

/// Implements [`Store`] for a type by forwarding every method to the store that its method
/// `$to` returns: `forward_store!(impl[T: Store + ?Sized] Arc<T> => deref)`. The pointer impls
/// below and stores that are another store inside (kv-sled's) use it.
#[doc(hidden)]
#[macro_export]
macro_rules! forward_store {
    (impl[$($generics:tt)*] $ty:ty => $to:ident) => {
        #[$crate::__async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<$($generics)*> $crate::Store for $ty {
            fn capabilities(&self) -> &$crate::Capabilities {
                self.$to().capabilities()
            }

            async fn get(&self, key: &str) -> $crate::Result<Option<$crate::KvPair>> {
                self.$to().get(key).await
            }

            async fn list(&self, prefix: &str) -> $crate::Result<Vec<$crate::KvPair>> {
                self.$to().list(prefix).await
            }

            async fn list_children(&self, prefix: &str) -> $crate::Result<Vec<$crate::Child>> {
                self.$to().list_children(prefix).await
            }

            async fn put_opts(
                &self,
                key: &str,
                value: &[u8],
                options: $crate::PutOptions,
            ) -> $crate::Result<u64> {
                self.$to().put_opts(key, value, options).await
            }

            async fn delete_opts(
                &self,
                key: &str,
                options: $crate::DeleteOptions,
            ) -> $crate::Result<bool> {
                self.$to().delete_opts(key, options).await
            }

            async fn delete_tree(&self, prefix: &str) -> $crate::Result<u64> {
                self.$to().delete_tree(prefix).await
            }

            async fn watch_opts(
                &self,
                key: &str,
                options: $crate::WatchOptions,
            ) -> $crate::Result<$crate::WatchStream> {
                self.$to().watch_opts(key, options).await
            }

            async fn close(&self) -> $crate::Result<()> {
                self.$to().close().await
            }

            async fn put(
                &self,
                key: &str,
                value: &[u8],
                options: $crate::PutOptions,
            ) -> $crate::Result<u64> {
                self.$to().put(key, value, options).await
            }

            async fn atomic_put(
                &self,
                key: &str,
                value: &[u8],
                precondition: $crate::Precondition,
                options: $crate::PutOptions,
            ) -> $crate::Result<u64> {
                self.$to().atomic_put(key, value, precondition, options).await
            }

            async fn delete(&self, key: &str) -> $crate::Result<bool> {
                self.$to().delete(key).await
            }

            async fn atomic_delete(&self, key: &str, version: u64) -> $crate::Result<()> {
                self.$to().atomic_delete(key, version).await
            }

            async fn exists(&self, key: &str) -> $crate::Result<bool> {
                self.$to().exists(key).await
            }

            async fn watch(
                &self,
                key: &str,
                options: $crate::WatchOptions,
            ) -> $crate::Result<$crate::WatchStream> {
                self.$to().watch(key, options).await
            }

            async fn watch_tree(
                &self,
                prefix: &str,
                options: $crate::WatchOptions,
            ) -> $crate::Result<$crate::WatchStream> {
                self.$to().watch_tree(prefix, options).await
            }

            async fn grant(&self, ttl: ::std::time::Duration) -> $crate::Result<$crate::Lease> {
                self.$to().grant(ttl).await
            }

            async fn attach_lease(&self, id: &str) -> $crate::Result<$crate::Lease> {
                self.$to().attach_lease(id).await
            }

            async fn txn(&self, txn: $crate::Txn) -> $crate::Result<Vec<$crate::TxnOpResult>> {
                self.$to().txn(txn).await
            }

            async fn new_lock(
                &self,
                key: &str,
                options: $crate::LockOptions,
            ) -> $crate::Result<::std::boxed::Box<dyn $crate::Lock>> {
                self.$to().new_lock(key, options).await
            }

            async fn purge(&self) -> $crate::Result<()> {
                self.$to().purge().await
            }
        }
    };
}

// `Arc<dyn Store>`, `Arc<MyStore>`, `Box<dyn Store>` are stores too: wrappers and helpers that
// take `impl Store` accept them.
use std::ops::Deref;
forward_store!(impl[T: Store + ?Sized] Arc<T> => deref);
forward_store!(impl[T: Store + ?Sized] Box<T> => deref);

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::error::Error;

    /// A store that implements only the required methods and records what reached them.
    #[derive(Debug)]
    struct Minimal {
        capabilities: Capabilities,
        calls: Mutex<Vec<String>>,
    }

    impl Minimal {
        fn new() -> Minimal {
            Minimal {
                capabilities: Capabilities::full("minimal", 10),
                calls: Mutex::default(),
            }
        }

        fn record(&self, call: String) {
            self.calls.lock().expect("calls").push(call);
        }

        fn calls(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().expect("calls"))
        }
    }

    #[async_trait]
    impl Store for Minimal {
        fn capabilities(&self) -> &Capabilities {
            &self.capabilities
        }

        async fn get(&self, key: &str) -> Result<Option<KvPair>> {
            self.record(format!("get {key}"));
            Ok(None)
        }

        async fn list(&self, _prefix: &str) -> Result<Vec<KvPair>> {
            Ok(Vec::new())
        }

        async fn list_children(&self, _prefix: &str) -> Result<Vec<Child>> {
            Ok(Vec::new())
        }

        async fn put_opts(&self, key: &str, _value: &[u8], options: PutOptions) -> Result<u64> {
            self.record(format!("put_opts {key} {:?}", options.precondition));
            Ok(1)
        }

        async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
            self.record(format!("delete_opts {key} {:?}", options.version));
            Ok(true)
        }

        async fn delete_tree(&self, prefix: &str) -> Result<u64> {
            self.record(format!("delete_tree {prefix:?}"));
            Ok(0)
        }

        async fn watch_opts(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
            self.record(format!("watch_opts {key} tree={}", options.tree));
            Err(Error::Closed)
        }

        async fn close(&self) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_conveniences_reach_the_required_methods_with_their_options() {
        let store = Minimal::new();
        store
            .put("a", b"v", PutOptions::default())
            .await
            .expect("put");
        let cas = Precondition::Version(3);
        store
            .atomic_put("a", b"v", cas, PutOptions::default())
            .await
            .expect("cas");
        assert!(store.delete("a").await.expect("delete"));
        store.atomic_delete("a", 4).await.expect("atomic_delete");
        assert!(!store.exists("a").await.expect("exists"));
        let _ = store.watch("a", WatchOptions::default().tree()).await;
        let _ = store.watch_tree("p", WatchOptions::default()).await;
        store.purge().await.expect("purge");
        assert_eq!(
            store.calls(),
            [
                "put_opts a None",
                "put_opts a Some(Version(3))",
                "delete_opts a None",
                "delete_opts a Some(4)",
                "get a",
                "watch_opts a tree=false",
                "watch_opts p tree=true",
                "delete_tree \"\"",
            ]
        );
    }

    #[tokio::test]
    async fn gated_methods_say_unsupported_unless_implemented() {
        let store = Minimal::new();
        let unsupported = |result: Result<()>, capability: &str| match result {
            Err(Error::Unsupported {
                backend: "minimal",
                capability: said,
            }) => assert_eq!(said, capability),
            other => panic!("{capability}: {other:?}"),
        };
        unsupported(
            store.grant(Duration::from_secs(5)).await.map(drop),
            "leases",
        );
        unsupported(store.attach_lease("1").await.map(drop), "attach_leases");
        let txn = Txn::new().put("a", &b"v"[..]);
        unsupported(store.txn(txn).await.map(drop), "transactions");
        let lock = store.new_lock("a", LockOptions::default()).await;
        unsupported(lock.map(drop), "locks");
        assert!(store.calls().is_empty(), "nothing was sent");
    }
}
