//! The etcd baseline: etcd-client called directly, the way a hand-rolled service would.
//!
//! | op | raw (this file) | kv-etcd |
//! |---|---|---|
//! | put | `put(key)` | `put` of `root/key` |
//! | get | `get(key)` | `get` of `root/key` |
//! | exists | `get(key, count_only)` | `get` keys-only |
//! | list | `get(dir/, prefix)` | `get` of the range `root/dir/` |
//! | delete | `delete(key)` | `delete` (returns whether it existed) |
//! | cas | txn: `mod_revision(key) == token` then put | the same txn |

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use kv::StoreUrl;

use super::{OpResult, Target};
use crate::output::{Failure, code};

/// A plain etcd-client connection.
pub struct RawEtcd(Client);

impl RawEtcd {
    /// Connects to the URL's endpoints (no TLS, no auth).
    pub async fn connect(url: &StoreUrl) -> Result<RawEtcd, Failure> {
        let endpoints: Vec<String> = url.hosts.iter().map(|h| h.address(2379)).collect();
        Client::connect(endpoints, None)
            .await
            .map(RawEtcd)
            .map_err(|e| Failure::new(code::UNREACHABLE, format!("etcd: {e}")))
    }
}

fn err(e: etcd_client::Error) -> String {
    e.to_string()
}

#[async_trait]
impl Target for RawEtcd {
    async fn put(&self, key: &str, value: &[u8]) -> OpResult<u64> {
        let response = self
            .0
            .kv_client()
            .put(key, value, None)
            .await
            .map_err(err)?;
        Ok(response.header().map_or(0, |h| h.revision() as u64))
    }

    async fn get(&self, key: &str) -> OpResult<bool> {
        let response = self.0.kv_client().get(key, None).await.map_err(err)?;
        Ok(!response.kvs().is_empty())
    }

    async fn exists(&self, key: &str) -> OpResult<bool> {
        let options = GetOptions::new().with_count_only();
        let response = self
            .0
            .kv_client()
            .get(key, Some(options))
            .await
            .map_err(err)?;
        Ok(response.count() > 0)
    }

    async fn list(&self, dir: &str) -> OpResult<usize> {
        let options = GetOptions::new().with_prefix();
        let response = self
            .0
            .kv_client()
            .get(format!("{dir}/"), Some(options))
            .await
            .map_err(err)?;
        Ok(response.kvs().len())
    }

    async fn delete(&self, key: &str) -> OpResult<()> {
        self.0
            .kv_client()
            .delete(key, None)
            .await
            .map(drop)
            .map_err(err)
    }

    async fn cas(&self, key: &str, _previous: &[u8], value: &[u8], token: u64) -> OpResult<u64> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, token as i64)])
            .and_then([TxnOp::put(key, value, None)]);
        let response = self.0.kv_client().txn(txn).await.map_err(err)?;
        if !response.succeeded() {
            return Err(format!("{key} changed"));
        }
        Ok(response.header().map_or(0, |h| h.revision() as u64))
    }

    async fn cleanup(&self, prefix: &str) -> OpResult<()> {
        let options = etcd_client::DeleteOptions::new().with_prefix();
        self.0
            .kv_client()
            .delete(format!("{prefix}/"), Some(options))
            .await
            .map(drop)
            .map_err(err)
    }
}
