//! Transactions: read every key the transaction names (one batched read each), check the
//! conditions on what is live, then commit one `multi` that also checks that every key is as
//! read (its directory's and value nodes' data versions: creating a value bumps the
//! directory's), so the conditions still hold when ZooKeeper applies it. A key that changed in
//! between means reading again.

use std::collections::HashMap;

use kv_core::backend::{CheckedTxn, TxnOp};
use kv_core::{Error, Key, Result, TxnOpResult};
use zookeeper_client as zk;

use crate::layout::Stored;
use crate::value::KeyState;
use crate::{Inner, map_error, map_write_error, timed_raw, version_of};

/// Reads and commits before giving up on keys that keep changing.
const ATTEMPTS: usize = 16;

impl Inner {
    /// Applies a checked transaction (default layout).
    pub async fn txn(&self, txn: &CheckedTxn) -> Result<Vec<TxnOpResult>> {
        let client = self.client().await?;
        let mut dirs = Vec::new();
        let result = self.attempts(&client, txn, &mut dirs).await;
        if result.is_ok() {
            for op in &txn.ops {
                if let TxnOp::Delete { key } = op {
                    dirs.push(self.layout.dir(key.as_str()));
                }
            }
        }
        futures::future::join_all(dirs.into_iter().map(|dir| self.prune(&client, dir))).await;
        result
    }

    /// Reads and commits until one commit finds every key as read; `made_dirs` gets the
    /// directories created on the way (to prune if they stay empty).
    async fn attempts(
        &self,
        client: &zk::Client,
        txn: &CheckedTxn,
        made_dirs: &mut Vec<String>,
    ) -> Result<Vec<TxnOpResult>> {
        let keys = txn.keys();
        for _ in 0..ATTEMPTS {
            let reads = keys.iter().map(|key| self.read_key(client, key.as_str()));
            let states = self
                .caught_up(client, futures::future::try_join_all(reads))
                .await?;
            let states: HashMap<&Key, KeyState> = keys.iter().copied().zip(states).collect();
            txn.check_conditions(|key| {
                let node = states.get(key)?.live()?;
                Some((&node.stored.value[..], version_of(node.stat.mzxid)))
            })?;
            // Every key needs a directory to check (and the written ones to hold values).
            let missing: Vec<String> = keys
                .iter()
                .filter(|key| states[*key].dir.is_none())
                .map(|key| self.layout.dir(key.as_str()))
                .collect();
            if !missing.is_empty() {
                for dir in missing {
                    self.make_dirs(client, &dir).await?;
                    made_dirs.push(dir);
                }
                continue;
            }
            if let Some(results) = self.commit(client, txn, &keys, &states).await? {
                return Ok(results);
            }
        }
        Err(Error::unavailable(
            "the transaction's keys kept changing under it; try again",
            None,
        ))
    }

    /// The `multi` of one attempt; `None` if a key changed since it was read.
    async fn commit(
        &self,
        client: &zk::Client,
        txn: &CheckedTxn,
        keys: &[&Key],
        states: &HashMap<&Key, KeyState>,
    ) -> Result<Option<Vec<TxnOpResult>>> {
        let options = self.value_options(None);
        let mut multi = client.new_multi_writer();
        let mut results = Vec::with_capacity(txn.ops.len());
        let mut add = || -> std::result::Result<(), zk::Error> {
            for key in keys {
                let state = &states[*key];
                if let Some(dir) = &state.dir {
                    multi.add_check_version(&self.layout.dir(key.as_str()), dir.version)?;
                }
                for node in &state.nodes {
                    multi.add_check_version(&node.path, node.stat.version)?;
                }
            }
            for op in &txn.ops {
                let state = &states[op.key()];
                match op {
                    TxnOp::Put { key, value } => {
                        let target = self.layout.value(key.as_str(), false);
                        let data = Stored::encode(value, None);
                        match state.nodes.as_slice() {
                            [only] if only.path == target => {
                                multi.add_set_data(&target, &data, Some(only.stat.version))?;
                            }
                            nodes => {
                                // A new value node: bumping the directory's version is what
                                // tells other writers' checks that a value appeared.
                                let dir = self.layout.dir(key.as_str());
                                let version = state.dir.as_ref().map(|d| d.version);
                                multi.add_set_data(&dir, &[], version)?;
                                for node in nodes {
                                    multi.add_delete(&node.path, Some(node.stat.version))?;
                                }
                                multi.add_create(&target, &data, &options)?;
                            }
                        }
                        results.push(None);
                    }
                    TxnOp::Delete { .. } => {
                        for node in &state.nodes {
                            multi.add_delete(&node.path, Some(node.stat.version))?;
                        }
                        results.push(Some(TxnOpResult::Delete {
                            existed: state.live().is_some(),
                        }));
                    }
                }
            }
            Ok(())
        };
        add().map_err(|e| map_error("txn", e))?;
        let answers = match timed_raw("txn", self.timeout, multi.commit())
            .await?
            .map_err(zk::Error::from)
        {
            Ok(answers) => answers,
            Err(zk::Error::BadVersion | zk::Error::NoNode | zk::Error::NodeExists) => {
                return Ok(None);
            }
            Err(error) => return Err(map_write_error("txn", error)),
        };
        // One multi is one transaction: every write has its zxid. Each put has a SetData.
        let version = answers
            .iter()
            .find_map(|a| match a {
                zk::MultiWriteResult::SetData { stat } => Some(version_of(stat.mzxid)),
                _ => None,
            })
            .unwrap_or(0);
        Ok(Some(
            results
                .into_iter()
                .map(|r| r.unwrap_or(TxnOpResult::Put { version }))
                .collect(),
        ))
    }
}
