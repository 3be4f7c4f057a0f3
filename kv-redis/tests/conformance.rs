//! The whole conformance suite against a real Redis, started by the harness (or
//! `KV_TEST_REDIS_URL`); each case under its own random root.

use std::sync::Arc;

use async_trait::async_trait;
use conformance::servers::{Provision, RedisProcess, provision};
use kv_core::{Result, Store};
use kv_redis::RedisStore;

struct Redis;

impl Redis {
    fn server_url() -> String {
        match provision(&RedisProcess) {
            Provision::Ready(server) => server.url.clone(),
            Provision::Skipped(message) => panic!("{message}"),
        }
    }
}

#[async_trait]
impl conformance::Backend for Redis {
    fn name(&self) -> &str {
        "redis"
    }

    fn skipped(&self) -> Option<String> {
        match provision(&RedisProcess) {
            Provision::Skipped(message) => Some(message),
            Provision::Ready(_) => None,
        }
    }

    async fn namespace(&self) -> Result<String> {
        Ok(format!(
            "{}?root={}",
            Redis::server_url(),
            conformance::random_name()
        ))
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(RedisStore::open(namespace).await?))
    }
}

conformance::conformance_tests!(Redis);
