//! The conformance backend of the ZooKeeper test binaries: the harness's server, each case
//! under its own random base path, with the given URL options.

use std::sync::Arc;

use async_trait::async_trait;
use conformance::servers::{Provision, ZooKeeperProcess, provision};
use kv_core::{Result, Store};
use kv_zookeeper::ZooKeeperStore;

/// ZooKeeper with URL options (`""`, or `"?layout=native"`).
pub struct ZooKeeper {
    pub name: &'static str,
    pub options: &'static str,
}

/// The harness's ZooKeeper server URL; a missing server fails loudly.
pub fn server_url() -> String {
    match provision(&ZooKeeperProcess) {
        Provision::Ready(server) => server.url.clone(),
        Provision::Skipped(message) => panic!("{message}"),
    }
}

#[async_trait]
impl conformance::Backend for ZooKeeper {
    fn name(&self) -> &str {
        self.name
    }

    fn skipped(&self) -> Option<String> {
        match provision(&ZooKeeperProcess) {
            Provision::Skipped(message) => Some(message),
            Provision::Ready(_) => None,
        }
    }

    async fn namespace(&self) -> Result<String> {
        Ok(format!(
            "{}/{}{}",
            server_url(),
            conformance::random_name(),
            self.options
        ))
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(ZooKeeperStore::open(namespace).await?))
    }
}
