//! kv-etcd's own etcd v3 client: the gRPC code generated from etcd's `.proto` files
//! ([`pb`], committed, so that building needs no `protoc`; `scripts/etcd-proto` regenerates it
//! and CI checks it) on a tonic channel, plus what etcd's API leaves to clients: the
//! authentication token (taken at connect, sent with every call, taken anew when etcd says it
//! expired) and request builders for the calls kv makes.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::SinkExt;
use futures::channel::mpsc;
use kv_core::Secret;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status, Streaming};

use pb::etcdserverpb::{
    AuthenticateRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, StatusRequest, StatusResponse, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchRequest, WatchResponse, auth_client::AuthClient, compare,
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    request_op, watch_client::WatchClient, watch_request,
};

/// etcd's v3 API as generated from its `.proto` files by `kv-etcd/codegen` (clients only).
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod pb {
    pub mod authpb;
    pub mod etcdserverpb;
    pub mod mvccpb;
}

/// How to reach one member.
#[derive(Clone, Default)]
pub(crate) struct ConnectOptions {
    pub connect_timeout: Option<Duration>,
    /// Limit of every request (tonic's own; the store's calls have their own deadline too).
    pub timeout: Option<Duration>,
    /// HTTP/2 pings: their interval, and how long an answer may take before the connection is
    /// dropped (so that a dead peer is noticed on an idle connection too).
    pub keep_alive: Option<(Duration, Duration)>,
    pub credentials: Option<(String, Secret)>,
    pub tls: Option<ClientTlsConfig>,
}

/// A connection to one etcd member (or to whatever a given channel reaches). Cheap to clone;
/// clones share the connection and the token.
#[derive(Clone)]
pub(crate) struct Client {
    channel: InterceptedService<Channel, Token>,
    auth: Arc<Auth>,
}

/// The authentication token sent with every call, once there is one.
#[derive(Clone, Default)]
struct Token(Arc<RwLock<Option<AsciiMetadataValue>>>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = self.0.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            request.metadata_mut().insert("token", token.clone());
        }
        Ok(request)
    }
}

/// Credentials, and the token they were last exchanged for.
struct Auth {
    credentials: Option<(String, Secret)>,
    token: Token,
    /// The channel without the token: `Authenticate` is how a token is obtained.
    channel: Channel,
    /// One re-authentication at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl Auth {
    fn current(&self) -> Option<AsciiMetadataValue> {
        self.token
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Exchanges the credentials (if any) for a fresh token.
    async fn authenticate(&self) -> Result<(), Status> {
        let Some((name, password)) = &self.credentials else {
            return Ok(());
        };
        let answer = AuthClient::new(self.channel.clone())
            .authenticate(AuthenticateRequest {
                name: name.clone(),
                password: password.expose().to_owned(),
            })
            .await?
            .into_inner();
        let token = answer
            .token
            .parse()
            .map_err(|_| Status::internal("etcd answered with a token that is not ASCII"))?;
        *self.token.0.write().unwrap_or_else(|p| p.into_inner()) = Some(token);
        Ok(())
    }

    /// Re-authenticates after `stale` was refused, unless another call did meanwhile.
    async fn refresh(&self, stale: Option<AsciiMetadataValue>) -> Result<(), Status> {
        let _one = self.refreshing.lock().await;
        if self.current() != stale {
            return Ok(());
        }
        self.authenticate().await
    }
}

/// etcd refused the call's token: expired (simple tokens expire after `--auth-token-ttl`,
/// 5 minutes by default, idle) or issued before a restart. The request was not applied.
fn token_refused(status: &Status) -> bool {
    status.code() == Code::Unauthenticated
        || (status.code() == Code::Unknown && status.message() == "etcdserver: invalid auth token")
}

impl Client {
    /// A client of the member at `endpoint` (`http://host:port` or `https://...`), connecting
    /// lazily; authenticates first when there are credentials (an error if that fails).
    pub async fn connect(endpoint: &str, options: &ConnectOptions) -> kv_core::Result<Client> {
        let mut builder = Endpoint::from_shared(endpoint.to_owned()).map_err(|e| {
            kv_core::Error::invalid_argument(format!("bad etcd endpoint {endpoint:?}: {e}"))
        })?;
        if let Some(tls) = &options.tls {
            builder = builder
                .tls_config(tls.clone())
                .map_err(|e| kv_core::Error::invalid_argument(format!("etcd TLS settings: {e}")))?;
        }
        if let Some((interval, timeout)) = options.keep_alive {
            builder = builder
                .keep_alive_while_idle(true)
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(timeout);
        }
        if let Some(timeout) = options.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(timeout) = options.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        let client = Client::new(builder.connect_lazy(), options.credentials.clone());
        client.auth.authenticate().await.map_err(crate::map_error)?;
        Ok(client)
    }

    /// A client over a channel configured elsewhere, without authentication.
    pub fn over(channel: Channel) -> Client {
        Client::new(channel, None)
    }

    fn new(channel: Channel, credentials: Option<(String, Secret)>) -> Client {
        let token = Token::default();
        Client {
            channel: InterceptedService::new(channel.clone(), token.clone()),
            auth: Arc::new(Auth {
                credentials,
                token,
                channel,
                refreshing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Sends `request` with `call`; once more with a fresh token if etcd refused the token.
    async fn unary<Req: Clone, T, Fut>(
        &self,
        request: Req,
        call: impl Fn(InterceptedService<Channel, Token>, Req) -> Fut,
    ) -> Result<T, Status>
    where
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let sent_with = self.auth.current();
        let refused = match call(self.channel.clone(), request.clone()).await {
            Err(status) if sent_with.is_some() && token_refused(&status) => status,
            answer => return answer.map(tonic::Response::into_inner),
        };
        tracing::debug!(target: "kv", backend = "etcd", code = ?refused.code(), "the auth token was refused; authenticating again");
        self.auth.refresh(sent_with).await?;
        call(self.channel.clone(), request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// `Range`: keys and values (see [`get`] and [`RangeRequest`]'s fields).
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Status> {
        self.unary(
            request,
            |c, r| async move { KvClient::new(c).range(r).await },
        )
        .await
    }

    /// `Put`.
    pub async fn put(&self, request: PutRequest) -> Result<PutResponse, Status> {
        self.unary(request, |c, r| async move { KvClient::new(c).put(r).await })
            .await
    }

    /// `DeleteRange`.
    pub async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Status> {
        self.unary(request, |c, r| async move {
            KvClient::new(c).delete_range(r).await
        })
        .await
    }

    /// `Txn`.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, Status> {
        self.unary(request, |c, r| async move { KvClient::new(c).txn(r).await })
            .await
    }

    /// `LeaseGrant` of `ttl` seconds (etcd picks the ID).
    pub async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse, Status> {
        let request = LeaseGrantRequest { ttl, id: 0 };
        self.unary(request, |c, r| async move {
            LeaseClient::new(c).lease_grant(r).await
        })
        .await
    }

    /// `LeaseRevoke`.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse, Status> {
        let request = LeaseRevokeRequest { id };
        self.unary(request, |c, r| async move {
            LeaseClient::new(c).lease_revoke(r).await
        })
        .await
    }

    /// `LeaseTimeToLive`, without the keys.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<LeaseTimeToLiveResponse, Status> {
        let request = LeaseTimeToLiveRequest { id, keys: false };
        self.unary(request, |c, r| async move {
            LeaseClient::new(c).lease_time_to_live(r).await
        })
        .await
    }

    /// `Status` of the member this client talks to.
    pub async fn status(&self) -> Result<StatusResponse, Status> {
        self.unary(StatusRequest {}, |c, r| async move {
            MaintenanceClient::new(c).status(r).await
        })
        .await
    }

    /// A `LeaseKeepAlive` stream for lease `id`, its first renewal sent (etcd answers the
    /// call once it has a request to answer): read with [`KeepAlive::renew`].
    pub async fn lease_keep_alive(&self, id: i64) -> Result<KeepAlive, Status> {
        let (requests, outgoing) = requests_from(LeaseKeepAliveRequest { id });
        let responses = LeaseClient::new(self.channel.clone())
            .lease_keep_alive(outgoing)
            .await?
            .into_inner();
        Ok(KeepAlive {
            id,
            requests,
            responses,
            sent: true,
        })
    }

    /// A `Watch` stream, created with `create` (sent first).
    pub async fn watch(&self, create: WatchCreateRequest) -> Result<Watch, Status> {
        let (requests, outgoing) = requests_from(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        });
        let responses = WatchClient::new(self.channel.clone())
            .watch(outgoing)
            .await?
            .into_inner();
        Ok(Watch {
            _requests: requests,
            responses,
        })
    }
}

/// The request side of a bidirectional call, `first` already queued (etcd answers the call
/// once it has a request), and the sender of the next ones.
fn requests_from<T>(first: T) -> (mpsc::Sender<T>, mpsc::Receiver<T>) {
    let (mut requests, outgoing) = mpsc::channel(1);
    // A new channel has room for one request: this cannot fail.
    let _ = requests.try_send(first);
    (requests, outgoing)
}

/// An open `LeaseKeepAlive` stream.
pub(crate) struct KeepAlive {
    id: i64,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
    /// A renewal was sent and not answered yet (the first, sent on opening).
    sent: bool,
}

impl KeepAlive {
    /// Renews the lease once: etcd's answer (`ttl` 0: the lease is gone), or `None` if the
    /// stream ended.
    pub async fn renew(&mut self) -> Result<Option<LeaseKeepAliveResponse>, Status> {
        if !self.sent {
            self.requests
                .send(LeaseKeepAliveRequest { id: self.id })
                .await
                .map_err(|_| Status::unavailable("the lease keep-alive stream is closed"))?;
            self.sent = true;
        }
        let answer = self.responses.message().await;
        self.sent = false;
        answer
    }
}

/// An open `Watch` stream (the request side is kept open while it lives).
pub(crate) struct Watch {
    _requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl Watch {
    /// The next response, or `None` if the stream ended.
    pub async fn message(&mut self) -> Result<Option<WatchResponse>, Status> {
        self.responses.message().await
    }
}

/// A point read of `key`.
pub(crate) fn get(key: impl Into<Vec<u8>>) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..RangeRequest::default()
    }
}

/// A read of `[start, end)`: `limit` keys at most (0: all), at `revision` (0: now).
pub(crate) fn range(
    start: impl Into<Vec<u8>>,
    end: impl Into<Vec<u8>>,
    limit: i64,
    revision: i64,
) -> RangeRequest {
    RangeRequest {
        key: start.into(),
        range_end: end.into(),
        limit,
        revision,
        ..RangeRequest::default()
    }
}

/// A put of `value` at `key`, attached to `lease` (0: none).
pub(crate) fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..PutRequest::default()
    }
}

/// A delete of `key`, or with `end` of `[key, end)`.
pub(crate) fn delete(key: impl Into<Vec<u8>>, end: Option<Vec<u8>>) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.into(),
        range_end: end.unwrap_or_default(),
        ..DeleteRangeRequest::default()
    }
}

/// A transaction: if every compare holds, `success`, else `failure`.
pub(crate) fn txn(
    compare: Vec<Compare>,
    success: impl IntoIterator<Item = request_op::Request>,
    failure: impl IntoIterator<Item = request_op::Request>,
) -> TxnRequest {
    fn ops(requests: impl IntoIterator<Item = request_op::Request>) -> Vec<RequestOp> {
        let op = |request| RequestOp {
            request: Some(request),
        };
        requests.into_iter().map(op).collect()
    }
    TxnRequest {
        compare,
        success: ops(success),
        failure: ops(failure),
    }
}

/// `key`'s create revision compared with `revision` (0: the key is missing).
pub(crate) fn create_revision(
    key: impl Into<Vec<u8>>,
    result: compare::CompareResult,
    revision: i64,
) -> Compare {
    let create = compare::TargetUnion::CreateRevision(revision);
    comparing(key, result, compare::CompareTarget::Create, create)
}

/// `key`'s mod revision compared with `revision`.
pub(crate) fn mod_revision(
    key: impl Into<Vec<u8>>,
    result: compare::CompareResult,
    revision: i64,
) -> Compare {
    let modified = compare::TargetUnion::ModRevision(revision);
    comparing(key, result, compare::CompareTarget::Mod, modified)
}

/// `key`'s value compared with `value` (fails on a missing key).
pub(crate) fn value_is(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Compare {
    let value = compare::TargetUnion::Value(value.into());
    let equal = compare::CompareResult::Equal;
    comparing(key, equal, compare::CompareTarget::Value, value)
}

/// One comparison of `key`'s `target` with `union` (which names the same target).
fn comparing(
    key: impl Into<Vec<u8>>,
    result: compare::CompareResult,
    target: compare::CompareTarget,
    union: compare::TargetUnion,
) -> Compare {
    Compare {
        result: result.into(),
        target: target.into(),
        key: key.into(),
        target_union: Some(union),
        range_end: Vec::new(),
    }
}
