//! The whole conformance suite against the in-memory reference backend.

use std::sync::Arc;

use async_trait::async_trait;
use kv_core::{Result, Store};
use kv_memory::MemoryStore;

/// Each case gets its own named namespace, so that it can open several handles on it.
struct Memory;

#[async_trait]
impl conformance::Backend for Memory {
    fn name(&self) -> &str {
        "memory"
    }

    async fn namespace(&self) -> Result<String> {
        Ok(format!("memory://{}", conformance::random_name()))
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(MemoryStore::open(namespace)?))
    }
}

conformance::conformance_tests!(Memory);

/// The same suite on namespaces without watch history, so the gated path of `since` is
/// exercised too (it must fail with `Unsupported("watch_history")`).
mod without_history {
    use super::*;

    struct MemoryWithoutHistory;

    #[async_trait]
    impl conformance::Backend for MemoryWithoutHistory {
        fn name(&self) -> &str {
            "memory-without-history"
        }

        async fn namespace(&self) -> Result<String> {
            Ok(format!("memory://{}?history=0", conformance::random_name()))
        }

        async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
            Ok(Arc::new(MemoryStore::open(namespace)?))
        }
    }

    conformance::conformance_tests!(MemoryWithoutHistory);
}
