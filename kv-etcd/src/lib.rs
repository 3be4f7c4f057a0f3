//! The etcd v3 backend of **kv** (etcd 3.4 and later), on its own gRPC client ([`proto`]: the
//! code generated from etcd's `.proto` files, committed, so building needs no `protoc`).
//!
//! - URL: `etcd://[user:password@]host:2379[,host:2379...][/root]?timeout=5s`. Every kv key
//!   lives under the root (`app/...`; with no root, the etcd key is the kv key: `a/b`;
//!   `layout=slash` keeps the pre-0.2 root-less layout `/a/b`). Options: `timeout` (every call,
//!   default 5 s), `connect_timeout` (default 5 s). TLS: `etcds://` or `tls=true`, with
//!   `ca=PATH` (PEM; else the system roots) and `cert=PATH&key=PATH` for client certificates.
//! - Versions are etcd mod revisions; CAS and atomic deletes are transactions; `delete_tree` is
//!   one transaction; TTL writes attach a lease (whole seconds, at least 2 s: etcd's minimum
//!   lease TTL with default election settings, declared in the capabilities).
//! - Watches take the current state at revision R and watch from R + 1, so nothing falls
//!   between; `since` uses etcd's history and reports compaction as `Error::Compacted`; a watch
//!   whose connection drops resumes from the last revision it saw, or ends with `Unavailable`.
//! - Locks are lock keys attached to a lease kept alive in the background; the fencing token is
//!   the lock key's create revision; subtree locks are one transaction comparing the ancestors'
//!   subtree locks and the whole range of locks below.

mod client;
mod errors;
mod layout;
mod lease;
mod lock;
mod members;
mod options;
mod store;
mod watch;

pub use client::pb as proto;
pub use options::EtcdOptions;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use client::Client;
use client::pb::etcdserverpb::{
    Compare, RangeRequest, ResponseHeader, ResponseOp, compare::CompareResult, request_op,
    response_op,
};
use client::pb::mvccpb::KeyValue;
use kv_core::backend::{Driver, HandleState, Holdings, Locality, Opening, TxnOp as KvTxnOp};
use kv_core::{
    Capabilities, Child, Condition, DeleteOptions, Error, Key, KvPair, Lock, LockOptions,
    LockScope, Precondition, PutOptions, Result, Store, StoreUrl, TtlSupport, TxnOpResult,
    WatchOptions, WatchStream,
};

use crate::errors::{map_error, map_write_error};
use crate::layout::{Layout, Range};
use crate::members::Members;

/// Default timeout of every call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest value: etcd refuses requests over 1.5 MiB by default; this leaves room for the key.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Conditions plus operations per transaction: etcd's default `--max-txn-ops` (128 per
/// branch).
pub const MAX_TXN_OPS: usize = 128;
/// Keys per page when reading large ranges.
const PAGE: i64 = 1000;

/// `etcd://host:2379[,host...][/root]`: this backend as `kv::open` and the tools know it.
pub const DRIVER: Driver = Driver::new("etcd", &["etcd", "etcds"], Locality::Server, open_driver);

fn open_driver(url: StoreUrl) -> Opening {
    Box::pin(async move { Ok(Arc::new(EtcdStore::from_url(&url).await?) as Arc<dyn Store>) })
}

/// A handle on an etcd cluster. Cheap to share as `Arc<dyn Store>`.
pub struct EtcdStore {
    inner: Arc<Inner>,
}

/// What the store, its watches and its locks share.
pub(crate) struct Inner {
    /// One client per listed endpoint (or one for a single endpoint), the preferred first.
    members: Members,
    pub layout: Layout,
    pub timeout: Duration,
    pub capabilities: Capabilities,
    /// Fires on close: ends watches, lock waits and renewals.
    pub closed: HandleState,
    /// Leases of the locks held through this handle, revoked on close.
    pub held: Holdings<i64>,
    shown: String,
}

impl EtcdStore {
    /// Connects to the cluster a `etcd://` URL names.
    pub async fn open(url: &str) -> Result<EtcdStore> {
        Self::from_url(&StoreUrl::parse(url)?).await
    }

    /// Connects to the cluster of a parsed URL.
    pub async fn from_url(url: &StoreUrl) -> Result<EtcdStore> {
        EtcdOptions::from_url(url)?.connect().await
    }

    /// A store over a tonic channel you configured yourself (TLS from PEM bytes, your own
    /// connector, proxy or load balancing): keys under `root` (a prefix; `""` for the whole
    /// keyspace, as `etcd://host` without a root), calls limited to `timeout`. No
    /// authentication is added. Fails, as `open` does, when the cluster does not answer.
    ///
    /// ```no_run
    /// # async fn demo() -> kv_core::Result<()> {
    /// let channel = tonic::transport::Channel::from_static("http://127.0.0.1:2379").connect_lazy();
    /// let store = kv_etcd::EtcdStore::with_channel(channel, "app", kv_etcd::DEFAULT_TIMEOUT).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_channel(
        channel: tonic::transport::Channel,
        root: &str,
        timeout: Duration,
    ) -> Result<EtcdStore> {
        let root = kv_core::Prefix::parse(root)?;
        let members = Members::over(Client::over(channel), "the channel given");
        let shown = format!("etcd (a channel given, root {:?})", root.as_str());
        Self::over(members, Layout::new(root.as_str(), false), timeout, shown).await
    }

    /// The store over connected members, once one of them answers.
    pub(crate) async fn over(
        members: Members,
        layout: Layout,
        timeout: Duration,
        shown: String,
    ) -> Result<EtcdStore> {
        let mut capabilities = Capabilities::full("etcd", MAX_VALUE_BYTES);
        capabilities.ttl = Some(TtlSupport {
            min: Duration::from_secs(2),
            granularity: Duration::from_secs(1),
        });
        capabilities.max_txn_ops = MAX_TXN_OPS;
        let store = EtcdStore {
            inner: Arc::new(Inner {
                members,
                layout,
                timeout,
                capabilities,
                closed: HandleState::default(),
                held: Holdings::default(),
                shown,
            }),
        };
        // Fail at open, not at the first call, when the cluster is unreachable or refuses us;
        // ask every member at once and prefer the first that answers (a hung member listed
        // first then costs nothing).
        store.inner.members.prefer_first_answering(timeout).await?;
        Ok(store)
    }
}

impl Inner {
    /// The client of the preferred member (the only one for a single endpoint).
    pub fn client(&self) -> Client {
        self.members.pick().1
    }

    /// Runs one etcd call (built on [`Inner::client`]) with the store's timeout, mapping its
    /// errors as a write's ([`map_write_error`]: a call that may have been applied is never
    /// `Unavailable`). A call that fails for want of an answer moves later calls to the next
    /// member; it is not retried itself (a write's outcome would be unknown).
    pub async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = std::result::Result<T, tonic::Status>>,
    ) -> Result<T> {
        let (member, _) = self.members.pick();
        let result = self
            .within(operation, self.timeout, call, |status| {
                map_write_error(operation, status)
            })
            .await;
        if result.as_ref().is_err_and(Error::is_transient) {
            self.members.failed(member);
        }
        result.map_err(|error| self.members.at(member, error))
    }

    /// Runs `call` within `budget`, its errors mapped; running out is `operation` timing out
    /// after the store's timeout (the budget the caller was promised).
    async fn within<T>(
        &self,
        operation: &'static str,
        budget: Duration,
        call: impl Future<Output = std::result::Result<T, tonic::Status>>,
        map: impl FnOnce(tonic::Status) -> Error,
    ) -> Result<T> {
        match tokio::time::timeout(budget, call).await {
            Ok(result) => result.map_err(|e| map(e).timed_out_as(operation, self.timeout)),
            Err(_) => Err(Error::Timeout {
                operation,
                after: self.timeout,
            }),
        }
    }

    /// Runs an idempotent call (a read) within the store's timeout, on the preferred member and,
    /// when it does not answer, on the next ones: a hung or dead member costs at most half of
    /// the remaining budget, never the call.
    pub async fn read<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let members = self.members.len();
        let mut attempt = 1;
        loop {
            let (member, client) = self.members.pick();
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let last = attempt >= members;
            let budget = if last { remaining } else { remaining / 2 };
            let error = match self
                .within(operation, budget, call(client), map_error)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(error) => self.members.at(member, error),
            };
            if !error.is_transient() {
                return Err(error);
            }
            self.members.failed(member);
            if last {
                return Err(error);
            }
            attempt += 1;
        }
    }

    /// Every key-value in `range` at `revision` (0: now), page by page; with the revision read.
    pub async fn range(
        &self,
        range: &Range,
        revision: i64,
        keys_only: bool,
    ) -> Result<(Vec<KeyValue>, i64)> {
        let mut kvs = Vec::new();
        let mut start = range.start.clone();
        let mut revision = revision;
        loop {
            let request = RangeRequest {
                keys_only,
                ..client::range(start.clone(), range.end.clone(), PAGE, revision)
            };
            let response = self
                .read("list", |client| {
                    let request = request.clone();
                    async move { client.range(request).await }
                })
                .await?;
            if revision == 0 {
                revision = revision_in(response.header.as_ref());
            }
            let more = response.more;
            let page = response.kvs;
            let last = page.last().map(|kv| kv.key.clone());
            kvs.extend(page);
            match (more, last) {
                (true, Some(mut last)) => {
                    last.push(0);
                    start = last;
                }
                _ => return Ok((kvs, revision)),
            }
        }
    }

    /// The checks every call on a key makes first.
    fn key<'a>(&self, key: &'a str) -> Result<&'a str> {
        let key = self.closed.key(key)?;
        self.layout.check_key(key)?;
        Ok(key)
    }

    /// The checks every call on a prefix makes first.
    fn prefix<'a>(&self, prefix: &'a str) -> Result<&'a str> {
        let prefix = self.closed.prefix(prefix)?;
        self.layout.check_key(prefix)?;
        Ok(prefix)
    }

    /// The pair of an etcd key-value, if it is one of this store's keys (its value moved, not
    /// copied).
    pub fn pair(&self, kv: KeyValue) -> Option<KvPair> {
        let version = u64::try_from(kv.mod_revision).ok()?;
        let key = Key::from_normalized(self.layout.kv_key(&kv.key)?);
        Some(KvPair {
            key,
            value: Bytes::from(kv.value),
            version,
        })
    }

    /// Every pair a prefix covers at `revision` (0: now), sorted, with the revision read. The
    /// prefix key and the first page below it are one transaction (one round trip, one
    /// revision); further pages are read at that revision.
    pub async fn list_at(&self, prefix: &str, revision: i64) -> Result<(Vec<KvPair>, i64)> {
        let below = self.layout.below(prefix);
        if prefix.is_empty() || revision != 0 {
            let (kvs, revision) = self.range(&below, revision, false).await?;
            let mut pairs = Vec::with_capacity(kvs.len() + 1);
            if !prefix.is_empty() {
                pairs.extend(self.own_pair(prefix, revision).await?);
            }
            pairs.extend(kvs.into_iter().filter_map(|kv| self.pair(kv)));
            return Ok((pairs, revision));
        }
        let txn = client::txn(
            Vec::new(),
            [
                request_op::Request::RequestRange(client::get(self.layout.data_key(prefix))),
                request_op::Request::RequestRange(client::range(
                    below.start.clone(),
                    below.end.clone(),
                    PAGE,
                    0,
                )),
            ],
            [],
        );
        let response = self
            .read("list", |client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        let revision = revision_in(response.header.as_ref());
        let mut pairs = Vec::new();
        let mut more = None;
        for answer in response.responses {
            if let Some(response_op::Response::ResponseRange(get)) = answer.response {
                if get.more {
                    more = get.kvs.last().map(|kv| [&kv.key[..], b"\0"].concat());
                }
                pairs.extend(get.kvs.into_iter().filter_map(|kv| self.pair(kv)));
            }
        }
        if let Some(start) = more {
            let rest = Range { start, ..below };
            let (kvs, _) = self.range(&rest, revision, false).await?;
            pairs.extend(kvs.into_iter().filter_map(|kv| self.pair(kv)));
        }
        Ok((pairs, revision))
    }

    /// The pair of the prefix key itself at `revision`, if it is one.
    async fn own_pair(&self, prefix: &str, revision: i64) -> Result<Option<KvPair>> {
        let own = self
            .read("list", |client| {
                let request = RangeRequest {
                    revision,
                    ..client::get(self.layout.data_key(prefix))
                };
                async move { client.range(request).await }
            })
            .await?;
        Ok(own.kvs.into_iter().find_map(|kv| self.pair(kv)))
    }

    /// Grants a lease; returns its id and the TTL etcd granted (whole seconds, at least one).
    pub async fn grant_lease(&self, ttl: Duration) -> Result<(i64, Duration)> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let lease = self
            .call("lease grant", self.client().lease_grant(seconds))
            .await?;
        let granted = u64::try_from(lease.ttl).unwrap_or(0);
        Ok((lease.id, Duration::from_secs(granted)))
    }

    async fn write(&self, key: &str, value: &[u8], options: &PutOptions) -> Result<u64> {
        let precondition = options.precondition;
        let key = self.key(key)?;
        self.capabilities.check_value(value.len())?;
        let ttl = self.capabilities.check_put(options)?;
        let mut lease = 0;
        if let Some(ttl) = ttl {
            lease = self.grant_lease(ttl).await?.0;
        }
        if let Some(given) = &options.lease {
            lease = lease::id_of(given)?;
        }
        let etcd_key = self.layout.data_key(key);
        let put = client::put(etcd_key.clone(), value, lease);
        let compare = match precondition {
            // A plain put needs no transaction.
            None => {
                let response = match self.call("put", self.client().put(put.clone())).await {
                    // Planted bug (self-test only): send a put whose answer was lost again.
                    Err(e)
                        if e.is_outcome_unknown()
                            && kv_core::failpoint::armed("put-retry-after-timeout") =>
                    {
                        self.call("put", self.client().put(put)).await?
                    }
                    answer => answer?,
                };
                return revision_of(response.header.as_ref());
            }
            Some(Precondition::MustNotExist) => {
                client::create_revision(etcd_key.clone(), CompareResult::Equal, 0)
            }
            Some(Precondition::Version(v)) => client::mod_revision(
                etcd_key.clone(),
                CompareResult::Equal,
                i64::try_from(v).unwrap_or(i64::MAX),
            ),
        };
        let txn = client::txn(
            vec![compare],
            [request_op::Request::RequestPut(put)],
            [request_op::Request::RequestRange(client::get(etcd_key))],
        );
        let response = self.call("put", self.client().txn(txn)).await?;
        if !response.succeeded {
            return Err(Error::conflict(
                key,
                conflict_reason(precondition, &response.responses),
            ));
        }
        revision_of(response.header.as_ref())
    }
}

/// The etcd comparison that holds exactly when `condition` holds for `key`.
fn compare(key: String, condition: &Condition) -> Compare {
    let revision = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    match condition {
        Condition::Missing => client::create_revision(key, CompareResult::Equal, 0),
        Condition::Exists => client::create_revision(key, CompareResult::Greater, 0),
        // A missing key's mod_revision is 0: version 0 must match nothing.
        Condition::Version(0) => client::mod_revision(key, CompareResult::Less, 0),
        Condition::Version(v) => client::mod_revision(key, CompareResult::Equal, revision(*v)),
        // etcd fails a value comparison on a missing key.
        Condition::Value(value) => client::value_is(key, value.to_vec()),
    }
}

/// The key-values read by the range requests among a transaction's answers, one entry each.
fn ranges_read(responses: Vec<ResponseOp>) -> impl Iterator<Item = Vec<KeyValue>> {
    responses
        .into_iter()
        .filter_map(|answer| match answer.response {
            Some(response_op::Response::ResponseRange(range)) => Some(range.kvs),
            _ => None,
        })
}

/// Keys deleted by the delete requests among a transaction's answers.
fn deleted_in(responses: &[ResponseOp]) -> i64 {
    responses
        .iter()
        .map(|answer| match &answer.response {
            Some(response_op::Response::ResponseDeleteRange(d)) => d.deleted,
            _ => 0,
        })
        .sum()
}

/// What a failed precondition found.
fn conflict_reason(precondition: Option<Precondition>, responses: &[ResponseOp]) -> String {
    let current = responses.iter().find_map(|r| match &r.response {
        Some(response_op::Response::ResponseRange(get)) => {
            get.kvs.first().map(|kv| kv.mod_revision)
        }
        _ => None,
    });
    match (precondition, current) {
        (Some(Precondition::MustNotExist), Some(v)) => format!("the key exists (version {v})"),
        (Some(Precondition::Version(want)), Some(v)) => {
            format!("the version is {v}, expected {want}")
        }
        (Some(Precondition::Version(want)), None) => {
            format!("the key does not exist (expected version {want})")
        }
        _ => "the precondition did not hold".into(),
    }
}

pub(crate) fn revision_of(header: Option<&ResponseHeader>) -> Result<u64> {
    header
        .and_then(|h| u64::try_from(h.revision).ok())
        .ok_or_else(|| Error::Backend("etcd answered without a revision".into()))
}

/// The revision in a response's header (0 if it has none).
pub(crate) fn revision_in(header: Option<&ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn a_write_is_unavailable_only_when_it_cannot_have_been_applied() {
        let write = |code, message: &str| map_write_error("put", Status::new(code, message));
        // Never sent, or never proposed.
        for (code, message) in [
            (Code::Unavailable, "tcp connect error"),
            (Code::Unavailable, "Connection refused (os error 111)"),
            (Code::Unavailable, "etcdserver: no leader"),
        ] {
            let error = write(code, message);
            assert!(
                matches!(error, Error::Unavailable { .. }),
                "{message}: {error:?}"
            );
        }
        // Sent: the answer was lost, or etcd could not say.
        for (code, message) in [
            (Code::Unknown, "transport error"),
            (Code::Unavailable, "etcdserver: leader changed"),
            (Code::Unavailable, "etcdserver: request timed out"),
            (Code::Unavailable, "keep-alive timed out"),
            (Code::Cancelled, "h2 protocol error: stream reset"),
            (Code::Cancelled, "Timeout expired"),
        ] {
            let error = write(code, message);
            assert!(error.is_outcome_unknown(), "{message}: {error:?}");
        }
        // Refused outright: typed as the read path types it.
        assert!(matches!(
            write(Code::InvalidArgument, "etcdserver: authentication failed"),
            Error::Auth { .. }
        ));
    }
}
