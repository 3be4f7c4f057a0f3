//! The whole conformance suite against kv-sqlite, each case in a fresh database file.

use std::sync::Arc;

use async_trait::async_trait;
use kv_core::{Result, Store};
use kv_sqlite::SqliteStore;

struct Sqlite;

#[async_trait]
impl conformance::Backend for Sqlite {
    fn name(&self) -> &str {
        "sqlite"
    }

    async fn namespace(&self) -> Result<String> {
        // Kept until the test process exits: handles may outlive the case.
        let dir = tempfile::tempdir().expect("a temp dir").keep();
        Ok(format!("sqlite://{}/kv.db", dir.display()))
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(SqliteStore::open(namespace).await?))
    }
}

conformance::conformance_tests!(Sqlite);
