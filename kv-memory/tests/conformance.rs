//! The whole conformance suite against the in-memory reference backend.

use std::sync::Arc;

use async_trait::async_trait;
use kv_core::{Result, Store};
use kv_memory::MemoryStore;

/// Each case gets its own named namespace (with these URL options), so that it can open
/// several handles on it.
struct Memory {
    name: &'static str,
    options: &'static str,
}

#[async_trait]
impl conformance::Backend for Memory {
    fn name(&self) -> &str {
        self.name
    }

    async fn namespace(&self) -> Result<String> {
        Ok(format!(
            "memory://{}{}",
            conformance::random_name(),
            self.options
        ))
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(MemoryStore::open(namespace)?))
    }
}

conformance::conformance_tests!(Memory {
    name: "memory",
    options: ""
});

/// The same suite on namespaces without watch history, so the gated path of `since` is
/// exercised too (it must fail with `Unsupported("watch_history")`).
mod without_history {
    use super::Memory;

    conformance::conformance_tests!(Memory {
        name: "memory-without-history",
        options: "?history=0"
    });
}

/// The suite through [`kv_core::PrefixStore`]: every handle is the same memory namespace
/// scoped to `tenants/acme`, with a neighbour's data beside it that nothing may touch.
mod scoped {
    use std::sync::Arc;

    use async_trait::async_trait;
    use kv_core::{PrefixStore, PutOptions, Result, Store};
    use kv_memory::MemoryStore;

    struct Scoped;

    #[async_trait]
    impl conformance::Backend for Scoped {
        fn name(&self) -> &str {
            "memory-scoped"
        }

        async fn namespace(&self) -> Result<String> {
            let url = format!("memory://{}", conformance::random_name());
            // Kept open for the namespace's lifetime: a value at the prefix key itself (outside
            // the scope), a neighbour's tree, and a sibling whose name extends the prefix.
            let neighbour = MemoryStore::open(&url)?;
            for key in ["tenants/acme", "tenants/other/k", "tenants/acme-x/k"] {
                neighbour.put(key, b"n", PutOptions::default()).await?;
            }
            std::mem::forget(neighbour);
            Ok(url)
        }

        async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
            let inner: Arc<dyn Store> = Arc::new(MemoryStore::open(namespace)?);
            Ok(Arc::new(PrefixStore::new(inner, "tenants/acme")?))
        }
    }

    conformance::conformance_tests!(Scoped);
}

/// The suite through [`conformance::Restricted`] with capabilities switched off, so that every
/// gated branch really runs (each must see `Unsupported`, or accept the weaker claim).
mod restricted {
    use std::sync::Arc;

    use async_trait::async_trait;
    use kv_core::{Capabilities, Result, Store};
    use kv_memory::MemoryStore;

    struct Restricted {
        name: &'static str,
        restrict: fn(&mut Capabilities),
    }

    #[async_trait]
    impl conformance::Backend for Restricted {
        fn name(&self) -> &str {
            self.name
        }

        async fn namespace(&self) -> Result<String> {
            Ok(format!("memory://{}", conformance::random_name()))
        }

        async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
            let inner: Arc<dyn Store> = Arc::new(MemoryStore::open(namespace)?);
            Ok(Arc::new(conformance::Restricted::new(inner, self.restrict)))
        }
    }

    mod without_ttl {
        conformance::conformance_tests!(super::Restricted {
            name: "memory-without-ttl",
            restrict: |c| c.ttl = None,
        });
    }

    mod without_locks {
        conformance::conformance_tests!(super::Restricted {
            name: "memory-without-locks",
            restrict: |c| {
                c.locks = false;
                c.subtree_locks = false;
            },
        });
    }

    mod without_leases {
        conformance::conformance_tests!(super::Restricted {
            name: "memory-without-leases",
            restrict: |c| c.leases = false,
        });
    }

    mod without_transactions {
        conformance::conformance_tests!(super::Restricted {
            name: "memory-without-transactions",
            restrict: |c| c.max_txn_ops = 0,
        });
    }

    mod small_transactions {
        conformance::conformance_tests!(super::Restricted {
            name: "memory-small-transactions",
            restrict: |c| c.max_txn_ops = 8,
        });
    }

    mod without_subtree_locks {
        conformance::conformance_tests!(super::Restricted {
            name: "memory-without-subtree-locks",
            restrict: |c| c.subtree_locks = false,
        });
    }

    mod weaker_claims {
        conformance::conformance_tests!(super::Restricted {
            name: "memory-weaker-claims",
            restrict: |c| {
                c.watch_coalesces = true;
                c.atomic_delete_tree = false;
            },
        });
    }
}
