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
