//! The whole conformance suite against a real Consul agent, started by the harness (or
//! `KV_TEST_CONSUL_URL`); each case under its own random root.

use std::sync::Arc;

use async_trait::async_trait;
use conformance::servers::{ConsulProcess, Provision, provision};
use kv_consul::ConsulStore;
use kv_core::{Result, Store};

struct Consul;

impl Consul {
    fn server_url() -> String {
        match provision(&ConsulProcess) {
            Provision::Ready(server) => server.url.clone(),
            Provision::Skipped(message) => panic!("{message}"),
        }
    }
}

#[async_trait]
impl conformance::Backend for Consul {
    fn name(&self) -> &str {
        "consul"
    }

    fn skipped(&self) -> Option<String> {
        match provision(&ConsulProcess) {
            Provision::Skipped(message) => Some(message),
            Provision::Ready(_) => None,
        }
    }

    async fn namespace(&self) -> Result<String> {
        Ok(format!(
            "{}/{}",
            Consul::server_url(),
            conformance::random_name()
        ))
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(ConsulStore::open(namespace).await?))
    }
}

conformance::conformance_tests!(Consul);

/// The suite again through [`ConsulStore::with_client`]: a store over an HTTP client the
/// user built.
mod with_client {
    use super::*;

    struct ConsulWithClient;

    #[async_trait]
    impl conformance::Backend for ConsulWithClient {
        fn name(&self) -> &str {
            "consul-with-client"
        }

        fn skipped(&self) -> Option<String> {
            Consul.skipped()
        }

        async fn namespace(&self) -> Result<String> {
            Consul.namespace().await
        }

        async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
            // reqwest is built without a default TLS provider: install the workspace's one.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let url = kv_core::StoreUrl::parse(namespace)?;
            let agent = format!("http://{}", url.hosts[0].address(8500));
            let http = reqwest::Client::new();
            let store = ConsulStore::with_client(
                http,
                &agent,
                &url.path,
                url.option("token"),
                kv_consul::DEFAULT_TIMEOUT,
            )
            .await?;
            Ok(Arc::new(store))
        }
    }

    conformance::conformance_tests!(ConsulWithClient);
}
