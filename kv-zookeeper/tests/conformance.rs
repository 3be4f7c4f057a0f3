//! The whole conformance suite against a real ZooKeeper, started by the harness (or
//! `KV_TEST_ZOOKEEPER_URL`); each case under its own random base path.

use std::sync::Arc;

use async_trait::async_trait;
use conformance::servers::{Provision, ZooKeeperProcess, provision};
use kv_core::{Result, Store};
use kv_zookeeper::ZooKeeperStore;

struct ZooKeeper;

impl ZooKeeper {
    fn server_url() -> String {
        match provision(&ZooKeeperProcess) {
            Provision::Ready(server) => server.url.clone(),
            Provision::Skipped(message) => panic!("{message}"),
        }
    }
}

#[async_trait]
impl conformance::Backend for ZooKeeper {
    fn name(&self) -> &str {
        "zookeeper"
    }

    fn skipped(&self) -> Option<String> {
        match provision(&ZooKeeperProcess) {
            Provision::Skipped(message) => Some(message),
            Provision::Ready(_) => None,
        }
    }

    async fn namespace(&self) -> Result<String> {
        Ok(format!(
            "{}/{}",
            ZooKeeper::server_url(),
            conformance::random_name()
        ))
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(ZooKeeperStore::open(namespace).await?))
    }
}

conformance::conformance_tests!(ZooKeeper);
