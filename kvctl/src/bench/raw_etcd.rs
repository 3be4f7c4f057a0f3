//! The etcd baseline: etcd's v3 gRPC API called directly on a tonic channel, the way a
//! hand-rolled service would (the generated stubs `kv_etcd::proto` exposes; etcd-client is a
//! thin layer over the same stubs).
//!
//! | op | raw (this file) | kv-etcd |
//! |---|---|---|
//! | put | `Put(key)` | `put` of `root/key` |
//! | get | `Range(key)` | `get` of `root/key` |
//! | exists | `Range(key, count_only)` | `get` keys-only |
//! | list | `Range(dir/, prefix)` | `get` of the range `root/dir/` |
//! | delete | `DeleteRange(key)` | `delete` (returns whether it existed) |
//! | cas | txn: `mod_revision(key) == token` then put | the same txn |

use async_trait::async_trait;
use kv::StoreUrl;
use kv::etcd::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
    compare, kv_client::KvClient, request_op,
};
use tonic::transport::{Channel, Endpoint};

use super::{OpResult, Target};
use crate::output::{Failure, code};

/// A plain gRPC channel to the URL's endpoints.
pub struct RawEtcd(KvClient<Channel>);

impl RawEtcd {
    /// Connects to the URL's endpoints (no TLS, no auth), balanced as etcd-client does.
    pub async fn connect(url: &StoreUrl) -> Result<RawEtcd, Failure> {
        let endpoints = url
            .hosts
            .iter()
            .map(|h| Endpoint::from_shared(format!("http://{}", h.address(2379))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::new(code::USAGE, format!("etcd endpoint: {e}")))?;
        Ok(RawEtcd(KvClient::new(Channel::balance_list(
            endpoints.into_iter(),
        ))))
    }

    fn kv(&self) -> KvClient<Channel> {
        self.0.clone()
    }
}

fn err(e: tonic::Status) -> String {
    e.to_string()
}

fn revision(header: Option<ResponseHeader>) -> u64 {
    header.map_or(0, |h| h.revision as u64)
}

/// The end of the range of every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[async_trait]
impl Target for RawEtcd {
    async fn put(&self, key: &str, value: &[u8]) -> OpResult<u64> {
        let request = PutRequest {
            key: key.into(),
            value: value.to_vec(),
            ..PutRequest::default()
        };
        let response = self.kv().put(request).await.map_err(err)?.into_inner();
        Ok(revision(response.header))
    }

    async fn get(&self, key: &str) -> OpResult<bool> {
        let request = RangeRequest {
            key: key.into(),
            ..RangeRequest::default()
        };
        let response = self.kv().range(request).await.map_err(err)?.into_inner();
        Ok(!response.kvs.is_empty())
    }

    async fn exists(&self, key: &str) -> OpResult<bool> {
        let request = RangeRequest {
            key: key.into(),
            count_only: true,
            ..RangeRequest::default()
        };
        let response = self.kv().range(request).await.map_err(err)?.into_inner();
        Ok(response.count > 0)
    }

    async fn list(&self, dir: &str) -> OpResult<usize> {
        let start = format!("{dir}/");
        let request = RangeRequest {
            range_end: prefix_end(&start),
            key: start.into_bytes(),
            ..RangeRequest::default()
        };
        let response = self.kv().range(request).await.map_err(err)?.into_inner();
        Ok(response.kvs.len())
    }

    async fn delete(&self, key: &str) -> OpResult<()> {
        let request = DeleteRangeRequest {
            key: key.into(),
            ..DeleteRangeRequest::default()
        };
        self.kv().delete_range(request).await.map(drop).map_err(err)
    }

    async fn cas(&self, key: &str, _previous: &[u8], value: &[u8], token: u64) -> OpResult<u64> {
        let request = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal.into(),
                target: compare::CompareTarget::Mod.into(),
                key: key.into(),
                target_union: Some(compare::TargetUnion::ModRevision(token as i64)),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.into(),
                    value: value.to_vec(),
                    ..PutRequest::default()
                })),
            }],
            failure: Vec::new(),
        };
        let response = self.kv().txn(request).await.map_err(err)?.into_inner();
        if !response.succeeded {
            return Err(format!("{key} changed"));
        }
        Ok(revision(response.header))
    }

    async fn cleanup(&self, prefix: &str) -> OpResult<()> {
        let start = format!("{prefix}/");
        let request = DeleteRangeRequest {
            range_end: prefix_end(&start),
            key: start.into_bytes(),
            ..DeleteRangeRequest::default()
        };
        self.kv().delete_range(request).await.map(drop).map_err(err)
    }
}
