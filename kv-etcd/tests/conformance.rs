//! The whole conformance suite against a real etcd, started by the harness (or
//! `KV_TEST_ETCD_URL`); each case under its own random root.

use std::sync::Arc;

use async_trait::async_trait;
use conformance::servers::{EtcdProcess, Provision, provision};
use kv_core::{Result, Store};
use kv_etcd::EtcdStore;

struct Etcd;

impl Etcd {
    fn server_url() -> String {
        match provision(&EtcdProcess) {
            Provision::Ready(server) => server.url.clone(),
            Provision::Skipped(message) => panic!("{message}"),
        }
    }
}

#[async_trait]
impl conformance::Backend for Etcd {
    fn name(&self) -> &str {
        "etcd"
    }

    fn skipped(&self) -> Option<String> {
        match provision(&EtcdProcess) {
            Provision::Skipped(message) => Some(message),
            Provision::Ready(_) => None,
        }
    }

    async fn namespace(&self) -> Result<String> {
        Ok(format!(
            "{}/{}",
            Etcd::server_url(),
            conformance::random_name()
        ))
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(EtcdStore::open(namespace).await?))
    }
}

conformance::conformance_tests!(Etcd);

/// The suite again through [`EtcdStore::with_channel`]: a store over a channel the user built.
mod with_channel {
    use super::*;

    struct EtcdWithChannel;

    #[async_trait]
    impl conformance::Backend for EtcdWithChannel {
        fn name(&self) -> &str {
            "etcd-with-client"
        }

        fn skipped(&self) -> Option<String> {
            Etcd.skipped()
        }

        async fn namespace(&self) -> Result<String> {
            Etcd.namespace().await
        }

        async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
            let url = kv_core::StoreUrl::parse(namespace)?;
            let endpoint = format!("http://{}", url.hosts[0].address(2379));
            let channel = tonic::transport::Channel::from_shared(endpoint)
                .map_err(|e| kv_core::Error::invalid_argument(e.to_string()))?
                .connect_lazy();
            let store =
                EtcdStore::with_channel(channel, &url.path, kv_etcd::DEFAULT_TIMEOUT).await?;
            Ok(Arc::new(store))
        }
    }

    conformance::conformance_tests!(EtcdWithChannel);
}
