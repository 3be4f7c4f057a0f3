//! The conformance backend of the Redis test binaries: a server, each case under its own
//! random root, with the given URL options.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use conformance::servers::{Provision, RedisProcess, Server, opted_out, provision};
use kv_core::{Result, Store};
use kv_redis::RedisStore;

/// Redis with URL options (`""`, or `"&layout=native"`); `notifications` starts a server of
/// its own that sends keyspace notifications; `with_client` opens the store over a
/// `redis::Client` the test built ([`kv_redis::RedisOptions::with_client`]; URL options other
/// than the root do not apply).
pub struct Redis {
    pub name: &'static str,
    pub options: &'static str,
    pub notifications: bool,
    pub with_client: bool,
}

/// The harness's Redis server URL; a missing server fails loudly.
pub fn server_url() -> String {
    match provision(&RedisProcess) {
        Provision::Ready(server) => server.url.clone(),
        Provision::Skipped(message) => panic!("{message}"),
    }
}

/// A server of this test binary that sends every keyspace notification (`KA`).
pub fn notifying_server_url() -> String {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            RedisProcess
                .start_with(&["--notify-keyspace-events", "KA"])
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .url
        .clone()
}

#[async_trait]
impl conformance::Backend for Redis {
    fn name(&self) -> &str {
        self.name
    }

    fn skipped(&self) -> Option<String> {
        if self.notifications && opted_out("redis", self.name) {
            return Some(format!("{}: Redis is opted out (KV_TEST_SKIP)", self.name));
        }
        match provision(&RedisProcess) {
            Provision::Skipped(message) => Some(message),
            Provision::Ready(_) => None,
        }
    }

    async fn namespace(&self) -> Result<String> {
        let server = if self.notifications {
            notifying_server_url()
        } else {
            server_url()
        };
        Ok(format!(
            "{server}?root={}{}",
            conformance::random_name(),
            self.options
        ))
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        if !self.with_client {
            return Ok(Arc::new(RedisStore::open(namespace).await?));
        }
        let url = kv_core::StoreUrl::parse(namespace)?;
        let client = redis::Client::open(format!("redis://{}/", url.hosts[0].address(6379)))
            .map_err(|e| kv_core::Error::Backend(Box::new(e)))?;
        let store = kv_redis::RedisOptions::with_client(client)
            .root(url.option("root").unwrap_or(""))
            .connect()
            .await?;
        Ok(Arc::new(store))
    }
}
