//! The `Store` implementation: each call as etcd requests.

use super::*;

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("url", &self.inner.shown)
            .finish()
    }
}

#[async_trait]
impl Store for EtcdStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    async fn put_opts(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        self.inner.write(key, value, &options).await
    }

    async fn get(&self, key: &str) -> Result<Option<KvPair>> {
        let inner = &self.inner;
        let key = inner.key(key)?;
        let response = inner
            .read("get", |client| {
                let request = client::get(inner.layout.data_key(key));
                async move { client.range(request).await }
            })
            .await?;
        Ok(response
            .kvs
            .into_iter()
            .next()
            .and_then(|kv| inner.pair(kv)))
    }

    async fn delete_opts(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        let inner = &self.inner;
        let key = inner.key(key)?;
        let etcd_key = inner.layout.data_key(key);
        let Some(version) = options.version else {
            let request = client::delete(etcd_key, None);
            let response = inner
                .call("delete", inner.client().delete_range(request))
                .await?;
            return Ok(response.deleted > 0);
        };
        let txn = client::txn(
            vec![client::mod_revision(
                etcd_key.clone(),
                CompareResult::Equal,
                i64::try_from(version).unwrap_or(i64::MAX),
            )],
            [request_op::Request::RequestDeleteRange(client::delete(
                etcd_key.clone(),
                None,
            ))],
            [request_op::Request::RequestRange(client::get(etcd_key))],
        );
        let response = inner.call("atomic_delete", inner.client().txn(txn)).await?;
        if !response.succeeded {
            return Err(Error::conflict(
                key,
                conflict_reason(Some(Precondition::Version(version)), &response.responses),
            ));
        }
        Ok(true)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let inner = &self.inner;
        let key = inner.key(key)?;
        let response = inner
            .read("exists", |client| {
                let request = RangeRequest {
                    count_only: true,
                    ..client::get(inner.layout.data_key(key))
                };
                async move { client.range(request).await }
            })
            .await?;
        Ok(response.count > 0)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        let prefix = self.inner.prefix(prefix)?;
        let pairs = self.inner.list_at(prefix, 0).await?.0;
        if kv_core::failpoint::armed("list-key-by-key") {
            // Planted (the robustness self-test): each key read again on its own, a moment
            // apart, as a list that walks its keys would — no longer one snapshot.
            let mut walked = Vec::with_capacity(pairs.len());
            for pair in pairs {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                walked.extend(self.get(pair.key.as_str()).await?);
            }
            return Ok(walked);
        }
        Ok(pairs)
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<Child>> {
        let inner = &self.inner;
        let prefix = inner.prefix(prefix)?;
        let below = inner.layout.below(prefix);
        let base_len = below.base;
        let mut children: Vec<Child> = Vec::new();
        let (mut start, mut revision) = (below.start.clone(), 0);
        // Keys only, a page at a time, at one revision; after each page, jump past the rest of
        // the last child's subtree, so a big subtree costs one page, not all of its keys.
        loop {
            let request = RangeRequest {
                keys_only: true,
                ..client::range(start.clone(), below.end.clone(), PAGE, revision)
            };
            let response = inner
                .read("list_children", |client| {
                    let request = request.clone();
                    async move { client.range(request).await }
                })
                .await?;
            if revision == 0 {
                revision = revision_in(response.header.as_ref());
            }
            let mut next = None;
            for kv in &response.kvs {
                // Past this key, or past the subtree of its child.
                next = Some([&kv.key[..], b"\0"].concat());
                if inner.layout.kv_key(&kv.key).is_none() {
                    continue; // a lock, or an etcd key that is not a kv key
                }
                let Some(rest) = kv
                    .key
                    .get(base_len..)
                    .and_then(|r| std::str::from_utf8(r).ok())
                else {
                    continue;
                };
                let (name, deeper) = match rest.split_once('/') {
                    Some((name, _)) => (name, true),
                    None => (rest, false),
                };
                let child_key = if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                };
                match children
                    .iter_mut()
                    .rev()
                    .find(|c| c.key.as_str() == child_key)
                {
                    Some(child) => {
                        child.has_children |= deeper;
                        child.has_value |= !deeper;
                    }
                    None => children.push(Child {
                        key: Key::from_normalized(&child_key),
                        has_value: !deeper,
                        has_children: deeper,
                    }),
                }
                if deeper {
                    // `child0`: just past `child/...`.
                    let child_end = base_len + name.len();
                    next = Some([&kv.key[..child_end], b"0"].concat());
                }
            }
            match next {
                Some(next) if response.more => start = next,
                _ => break,
            }
        }
        children.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(children)
    }

    async fn delete_tree(&self, prefix: &str) -> Result<u64> {
        let inner = &self.inner;
        let prefix = inner.prefix(prefix)?;
        let mut ops: Vec<request_op::Request> = inner
            .layout
            .data_ranges(prefix)
            .into_iter()
            .map(|range| {
                request_op::Request::RequestDeleteRange(client::delete(
                    range.start,
                    Some(range.end),
                ))
            })
            .collect();
        if !prefix.is_empty() {
            ops.push(request_op::Request::RequestDeleteRange(client::delete(
                inner.layout.data_key(prefix),
                None,
            )));
        }
        let response = inner
            .call(
                "delete_tree",
                inner.client().txn(client::txn(Vec::new(), ops, [])),
            )
            .await?;
        Ok(u64::try_from(deleted_in(&response.responses)).unwrap_or(0))
    }

    async fn grant(&self, ttl: Duration) -> Result<kv_core::Lease> {
        self.inner.closed.check_open()?;
        let ttl = self.inner.capabilities.check_grant(ttl)?;
        lease::grant(&self.inner, ttl).await
    }

    async fn attach_lease(&self, id: &str) -> Result<kv_core::Lease> {
        self.inner.closed.check_open()?;
        self.inner.capabilities.check_attach()?;
        lease::attach(&self.inner, id).await
    }

    async fn txn(&self, txn: kv_core::Txn) -> Result<Vec<TxnOpResult>> {
        let inner = &self.inner;
        inner.closed.check_open()?;
        let txn = txn.check(&inner.capabilities)?;
        for key in txn.keys() {
            inner.layout.check_key(key.as_str())?;
        }
        let data_key = |key: &Key| inner.layout.data_key(key.as_str());
        let compares: Vec<Compare> = txn
            .conditions
            .iter()
            .map(|(key, condition)| compare(data_key(key), condition))
            .collect();
        let ops = txn.ops.iter().map(|op| match op {
            KvTxnOp::Put { key, value } => {
                request_op::Request::RequestPut(client::put(data_key(key), value.to_vec(), 0))
            }
            KvTxnOp::Delete { key } => {
                request_op::Request::RequestDeleteRange(client::delete(data_key(key), None))
            }
        });
        // On failure, read the compared keys (same revision) to say which condition failed.
        let reads = txn
            .conditions
            .iter()
            .map(|(key, _)| request_op::Request::RequestRange(client::get(data_key(key))));
        let request = client::txn(compares, ops, reads);
        let response = inner.call("txn", inner.client().txn(request)).await?;
        if !response.succeeded {
            let found: Vec<Option<KeyValue>> = ranges_read(response.responses)
                .map(|kvs| kvs.into_iter().next())
                .collect();
            let mut found = found.iter();
            txn.check_conditions(|_| {
                let kv = found.next()?.as_ref()?;
                Some((&kv.value[..], u64::try_from(kv.mod_revision).unwrap_or(0)))
            })?;
            return Err(Error::conflict(
                txn.conditions.first().map_or("", |(k, _)| k.as_str()),
                "a condition did not hold",
            ));
        }
        let revision = revision_of(response.header.as_ref())?;
        Ok(response
            .responses
            .iter()
            .map(|r| match &r.response {
                Some(response_op::Response::ResponseDeleteRange(d)) => TxnOpResult::Delete {
                    existed: d.deleted > 0,
                },
                _ => TxnOpResult::Put { version: revision },
            })
            .collect())
    }

    async fn watch_opts(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        let watched = match options.tree {
            true => self.inner.prefix(key)?,
            false => self.inner.key(key)?,
        };
        watch::open(self.inner.clone(), watched, options).await
    }

    async fn new_lock(&self, key: &str, options: LockOptions) -> Result<Box<dyn Lock>> {
        self.inner.closed.check_open()?;
        let key = Key::parse(key)?;
        let ttl = self.inner.capabilities.check_ttl(options.ttl)?;
        Ok(Box::new(lock::EtcdLock {
            inner: self.inner.clone(),
            key,
            subtree: options.scope == LockScope::Subtree,
            options: options.ttl(ttl),
        }))
    }

    async fn close(&self) -> Result<()> {
        if !self.inner.closed.begin_close() {
            return Ok(());
        }
        for lease in self.inner.held.take_all() {
            let _ = self
                .inner
                .call("lease revoke", self.inner.client().lease_revoke(lease))
                .await;
        }
        Ok(())
    }
}
