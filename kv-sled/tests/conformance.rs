//! The whole conformance suite against kv-sled, each case in its own fresh directory.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kv_core::{Result, Store};
use kv_sled::SledStore;
use tempfile::TempDir;

/// Hands out fresh store directories, removed when the test ends.
#[derive(Default)]
struct Sled {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl conformance::Backend for Sled {
    fn name(&self) -> &str {
        "sled"
    }

    async fn namespace(&self) -> Result<String> {
        let dir = tempfile::Builder::new()
            .prefix("kv-sled-conformance-")
            .tempdir()
            .expect("a temporary directory");
        let url = format!("sled://{}", dir.path().display());
        self.dirs.lock().expect("not poisoned").push(dir);
        Ok(url)
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(SledStore::open(namespace)?))
    }
}

conformance::conformance_tests!(Sled::default());
