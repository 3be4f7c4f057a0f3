//! Transactions: read every key the transaction names (one batched read each), check the
//! conditions on what is live, then commit one `multi` that also checks that every key is as
//! read (its epoch's and value nodes' data versions: creating a value bumps the epoch), so
//! the conditions still hold when ZooKeeper applies it. A key that changed in between means
//! reading again.

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
            // Keys left without a value (deleted, or only checked) may hold an epoch now.
            for key in txn.keys() {
                let written = txn
                    .ops
                    .iter()
                    .any(|op| matches!(op, TxnOp::Put { key: k, .. } if k == key));
                if !written {
                    self.reclaimer.schedule(key.as_str());
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
        // A put that is no rewrite in place creates a value node.
        let in_place = |key: &Key| match states[key].nodes.as_slice() {
            [only] => only.path == self.layout.value(key.as_str(), false),
            _ => false,
        };
        let creates = |key: &Key| {
            txn.ops
                .iter()
                .any(|op| matches!(op, TxnOp::Put { key: k, .. } if k == key) && !in_place(key))
        };
        let mut add = || -> std::result::Result<(), zk::Error> {
            for key in keys {
                let state = &states[*key];
                self.add_epoch(&mut multi, key.as_str(), state.epoch.as_ref(), creates(key))?;
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
                        if in_place(key) {
                            multi.add_set_data(&target, &data, None)?;
                        } else {
                            // A new value node (the epoch's bump above tells other writers'
                            // checks that a value appeared); the TTL name must stay free.
                            for node in &state.nodes {
                                multi.add_delete(&node.path, None)?;
                            }
                            multi.add_create(&target, &data, &options)?;
                            let other = self.layout.value(key.as_str(), true);
                            if !state.nodes.iter().any(|n| n.path == other) {
                                self.add_absent(&mut multi, &other)?;
                            }
                        }
                        results.push(None);
                    }
                    TxnOp::Delete { .. } => {
                        for node in &state.nodes {
                            multi.add_delete(&node.path, None)?;
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
