//! The ZooKeeper baseline: `zookeeper-client` on one session, one node per key.
//!
//! | op | raw (this file) | kv-zookeeper |
//! |---|---|---|
//! | put | `setData` (`create` with parents the first time) | `setData` of the key's `=` node |
//! | get | `getData` | multi-read: the `=` and `=t` nodes |
//! | exists | `exists` | the same multi-read |
//! | list | `getChildren` + one multi-read of the children's data | a multi-read per tree level + one for the values |
//! | delete | `delete` | multi-read, then `delete` of the value node, then prune empty directories |
//! | cas | `setData` with the data version from the last write | multi-read, then `setData` with the read data version |

use async_trait::async_trait;
use kv::StoreUrl;
use zookeeper_client as zk;

use super::{OpResult, Target};
use crate::output::{Failure, code};

/// A plain ZooKeeper session; keys are nodes under `/kvbench-raw`.
pub struct RawZooKeeper(zk::Client);

const BASE: &str = "/kvbench-raw";

impl RawZooKeeper {
    /// Connects to the URL's servers (no TLS, no auth).
    pub async fn connect(url: &StoreUrl) -> Result<RawZooKeeper, Failure> {
        let cluster: Vec<String> = url.hosts.iter().map(|h| h.address(2181)).collect();
        zk::Client::connect(&cluster.join(","))
            .await
            .map(RawZooKeeper)
            .map_err(|e| Failure::new(code::UNREACHABLE, format!("zookeeper: {e}")))
    }
}

fn path(key: &str) -> String {
    format!("{BASE}/{key}")
}

fn err(e: zk::Error) -> String {
    e.to_string()
}

#[async_trait]
impl Target for RawZooKeeper {
    async fn put(&self, key: &str, value: &[u8]) -> OpResult<u64> {
        let path = path(key);
        loop {
            match self.0.set_data(&path, value, None).await {
                Ok(stat) => return Ok(stat.version as u64),
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(err(e)),
            }
            let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            if let Some((parent, _)) = path.rsplit_once('/') {
                self.0.mkdir(parent, &options).await.map_err(err)?;
            }
            match self.0.create(&path, value, &options).await {
                Ok((stat, _)) => return Ok(stat.version as u64),
                // Another writer created it first: overwrite it.
                Err(zk::Error::NodeExists) => continue,
                Err(e) => return Err(err(e)),
            }
        }
    }

    async fn get(&self, key: &str) -> OpResult<bool> {
        match self.0.get_data(&path(key)).await {
            Ok(_) => Ok(true),
            Err(zk::Error::NoNode) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn exists(&self, key: &str) -> OpResult<bool> {
        Ok(self.0.check_stat(&path(key)).await.map_err(err)?.is_some())
    }

    async fn list(&self, dir: &str) -> OpResult<usize> {
        let dir = path(dir);
        let children = self.0.list_children(&dir).await.map_err(err)?;
        let mut reader = self.0.new_multi_reader();
        for child in &children {
            reader
                .add_get_data(&format!("{dir}/{child}"))
                .map_err(err)?;
        }
        let results = reader.commit().await.map_err(err)?;
        Ok(results
            .iter()
            .filter(|r| matches!(r, zk::MultiReadResult::Data { .. }))
            .count())
    }

    async fn delete(&self, key: &str) -> OpResult<()> {
        self.0.delete(&path(key), None).await.map_err(err)
    }

    async fn cas(&self, key: &str, _previous: &[u8], value: &[u8], token: u64) -> OpResult<u64> {
        let stat = self
            .0
            .set_data(&path(key), value, Some(token as i32))
            .await
            .map_err(err)?;
        Ok(stat.version as u64)
    }

    async fn cleanup(&self, prefix: &str) -> OpResult<()> {
        // Depth-first: children before parents.
        let mut stack = vec![path(prefix)];
        let mut order = Vec::new();
        while let Some(node) = stack.pop() {
            match self.0.list_children(&node).await {
                Ok(children) => stack.extend(children.into_iter().map(|c| format!("{node}/{c}"))),
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(err(e)),
            }
            order.push(node);
        }
        for node in order.into_iter().rev() {
            let _ = self.0.delete(&node, None).await;
        }
        let _ = self.0.delete(BASE, None).await;
        Ok(())
    }
}
