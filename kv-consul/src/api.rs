//! The slice of Consul's HTTP API kv-consul uses: KV reads (plain and blocking), transactions
//! and sessions, each with a timeout, mapped to kv's errors. The ACL token travels in the
//! `X-Consul-Token` header, marked sensitive, and never appears in an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use kv_core::{Error, Result};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

/// Characters escaped in a key's URL path: everything but unreserved characters and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Consul's most operations in one transaction.
pub const MAX_TXN_OPS: usize = 64;

/// One KV entry as Consul returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    pub key: String,
    #[serde(default)]
    pub flags: u64,
    #[serde(default, deserialize_with = "base64_value")]
    pub value: Bytes,
    pub modify_index: u64,
    #[serde(default)]
    pub session: Option<String>,
}

fn base64_value<'de, D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Bytes, D::Error> {
    let text: Option<String> = Option::deserialize(de)?;
    match text {
        None => Ok(Bytes::new()),
        Some(text) => BASE64
            .decode(text)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom),
    }
}

/// One operation of a `/v1/txn` request.
#[derive(Debug, Serialize)]
pub struct TxnOp {
    #[serde(rename = "KV")]
    kv: TxnKv,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TxnKv {
    verb: &'static str,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<String>,
}

impl TxnOp {
    fn new(verb: &'static str, key: &str) -> TxnOp {
        TxnOp {
            kv: TxnKv {
                verb,
                key: key.to_owned(),
                value: None,
                flags: None,
                index: None,
                session: None,
            },
        }
    }

    /// Reads a key; fails the transaction if it is missing.
    pub fn get(key: &str) -> TxnOp {
        TxnOp::new("get", key)
    }

    /// Reads every key starting with `prefix` (a raw prefix).
    pub fn get_tree(prefix: &str) -> TxnOp {
        TxnOp::new("get-tree", prefix)
    }

    /// Writes a key, attached to `session` (Consul's `lock` verb) if one is given.
    pub fn set(key: &str, value: &[u8], flags: u64, session: Option<&str>) -> TxnOp {
        let mut op = TxnOp::new(if session.is_some() { "lock" } else { "set" }, key);
        op.kv.value = Some(BASE64.encode(value));
        op.kv.flags = Some(flags);
        op.kv.session = session.map(str::to_owned);
        op
    }

    /// Deletes a key (no error if it is missing).
    pub fn delete(key: &str) -> TxnOp {
        TxnOp::new("delete", key)
    }

    /// Deletes every key starting with `prefix` (a raw prefix).
    pub fn delete_tree(prefix: &str) -> TxnOp {
        TxnOp::new("delete-tree", prefix)
    }

    /// Fails the transaction unless the key exists with this modify index.
    pub fn check_index(key: &str, index: u64) -> TxnOp {
        let mut op = TxnOp::new("check-index", key);
        op.kv.index = Some(index);
        op
    }

    /// Fails the transaction if the key exists.
    pub fn check_not_exists(key: &str) -> TxnOp {
        TxnOp::new("check-not-exists", key)
    }

    /// Fails the transaction unless `session` holds the key.
    pub fn check_session(key: &str, session: &str) -> TxnOp {
        let mut op = TxnOp::new("check-session", key);
        op.kv.session = Some(session.to_owned());
        op
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResponse {
    #[serde(default)]
    results: Option<Vec<TxnResult>>,
    #[serde(default)]
    errors: Option<Vec<TxnError>>,
}

#[derive(Deserialize)]
struct TxnResult {
    #[serde(rename = "KV")]
    kv: Option<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnError {
    what: String,
}

/// A transaction that Consul rolled back: why (the first failed check).
#[derive(Debug)]
pub struct Rollback {
    pub what: String,
}

/// The result of a blocking (or plain) read: the entries and Consul's index.
#[derive(Debug)]
pub struct Read<T> {
    pub entries: T,
    pub index: u64,
}

/// A session's settings.
pub struct SessionSpec {
    pub ttl: Duration,
    pub name: &'static str,
}

/// An HTTP client for Consul agents: the URL's agents, in order, the one in use kept until it
/// fails (shared by every clone).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    bases: Arc<[String]>,
    /// Index in `bases` of the agent in use.
    current: Arc<AtomicUsize>,
    token: Option<reqwest::header::HeaderValue>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("agents", &self.bases)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Api {
    /// A client for the agents at `bases` (`http://host:port`, at least one).
    pub fn new(
        http: reqwest::Client,
        bases: Vec<String>,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Api> {
        let token = token
            .map(|token| {
                let mut value = reqwest::header::HeaderValue::from_str(token)
                    .map_err(|_| Error::invalid_url("the Consul token has invalid characters"))?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        Ok(Api {
            http,
            bases: bases.into(),
            current: Arc::new(AtomicUsize::new(0)),
            token,
            timeout,
        })
    }

    fn kv_path(&self, key: &str) -> String {
        format!("/v1/kv/{}", utf8_percent_encode(key, PATH))
    }

    /// Sends a request to the agent in use, within `timeout`. Consul answers 500 while its
    /// servers elect a leader (and, just after an agent starts, before its node is
    /// registered): such an answer means nothing was applied, so the request is sent again,
    /// with backoff, within the call's budget ([`kv_core::backend::Budget`]). With several agents, one
    /// that cannot be reached, cannot reach a server, or does not answer a read within half of
    /// what is left is left for the next one; a write moves on only when it cannot have been
    /// applied (no connection, or "nothing done"), and a write that timed out makes the next
    /// call use the next agent.
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Response> {
        let mut budget = kv_core::backend::Budget::new(timeout);
        let read = method == Method::GET;
        // A blocking query takes its `wait` by design: never cut short for another agent.
        let blocking = query.iter().any(|(name, _)| *name == "index");
        let agents = self.bases.len();
        let mut tried = 1;
        loop {
            let at = self.current.load(Ordering::Relaxed) % agents;
            let others_left = tried < agents;
            let slice = if read && !blocking && others_left {
                budget.remaining() / 2
            } else {
                budget.remaining()
            };
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.bases[at]))
                .query(query)
                .timeout(slice.max(Duration::from_millis(1)));
            if let Some(token) = &self.token {
                request = request.header("X-Consul-Token", token.clone());
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    let unsent = error.is_connect();
                    if agents > 1 {
                        self.move_on(at);
                    }
                    if others_left && (read || unsent) {
                        tried += 1;
                        continue;
                    }
                    // A write whose connection broke after it was sent may have been applied:
                    // never `Unavailable` ("nothing was applied").
                    if !read && !unsent && !error.is_timeout() {
                        return Err(Error::OutcomeUnknown {
                            operation,
                            reason: format!(
                                "the connection to Consul broke during the call ({error})"
                            ),
                        });
                    }
                    return Err(transport(operation, timeout, error));
                }
            };
            if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
                return Ok(response);
            }
            let headers = response.headers().clone();
            let text = response.text().await.unwrap_or_default();
            if !read && is_lost_answer(&text) {
                return Err(Error::OutcomeUnknown {
                    operation,
                    reason: format!("Consul answered 500: {}", text.trim()),
                });
            }
            // A read can always be asked again; a write only when nothing was done.
            let again = nothing_done(&text) || (read && is_lost_answer(&text));
            if again && others_left && cannot_reach_a_server(&text) {
                self.move_on(at);
                tried += 1;
                continue;
            }
            if again && budget.pause().await {
                continue;
            }
            // Handed back as it came, for the caller to read.
            let mut answer = http::Response::new(text);
            *answer.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            *answer.headers_mut() = headers;
            return Ok(Response::from(answer));
        }
    }

    /// Makes the agent after `failed` the one in use (unless another call already moved on).
    fn move_on(&self, failed: usize) {
        let next = (failed + 1) % self.bases.len();
        if self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && self.bases.len() > 1
        {
            tracing::warn!(target: "kv", backend = "consul", failed, next, "an agent did not answer; moving to the next one of the URL");
        }
    }

    /// Reads one key, or every key with a raw prefix (`recurse`); `None` when nothing matches.
    /// With `wait`, a blocking query that returns once Consul's index passes `index` or after
    /// `wait`.
    pub async fn read(
        &self,
        operation: &'static str,
        key: &str,
        recurse: bool,
        wait: Option<(u64, Duration)>,
    ) -> Result<Read<Vec<Entry>>> {
        let mut query = Vec::new();
        if recurse {
            query.push(("recurse", "true".to_owned()));
        }
        let mut timeout = self.timeout;
        match wait {
            Some((index, wait)) => {
                query.push(("index", index.to_string()));
                query.push(("wait", format!("{}ms", wait.as_millis())));
                // Consul adds up to wait/16 of jitter.
                timeout += wait + wait / 16;
            }
            // A read is answered by a leader that has checked it still leads and has applied
            // every committed write (`consistent`): in Consul's default mode a newly elected
            // leader can answer from a state that misses writes its predecessor had
            // acknowledged (found by the robustness runs: a leader kill, then a read of a
            // value 170 versions old). Blocking queries (watches) only wait for a change.
            None => query.push(("consistent", "true".to_owned())),
        }
        let url = self.kv_path(key);
        let response = self
            .send(operation, Method::GET, &url, &query, None, timeout)
            .await?;
        let index = consul_index(&response);
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Read {
                entries: Vec::new(),
                index,
            });
        }
        let entries = json(operation, timeout, check(response).await?).await?;
        Ok(Read { entries, index })
    }

    /// The direct children of a raw prefix ending in `/`: keys, and sub-prefixes ending in `/`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let url = self.kv_path(prefix);
        let query = [
            ("keys", "true".to_owned()),
            ("separator", "/".to_owned()),
            ("consistent", "true".to_owned()),
        ];
        let response = self
            .send("list", Method::GET, &url, &query, None, self.timeout)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        json("list", self.timeout, check(response).await?).await
    }

    /// True if any key starts with the raw `prefix`, read from the leader (`consistent`).
    pub async fn any_key(&self, prefix: &str) -> Result<bool> {
        let url = self.kv_path(prefix);
        let query = [
            ("keys", "true".to_owned()),
            ("consistent", "true".to_owned()),
        ];
        let response = self
            .send("lock", Method::GET, &url, &query, None, self.timeout)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let keys: Vec<String> = json("lock", self.timeout, check(response).await?).await?;
        Ok(!keys.is_empty())
    }

    /// Runs a transaction: `Ok(Ok(entries))` when it committed (the entries its operations
    /// returned), `Ok(Err(rollback))` when a check failed and nothing changed.
    pub async fn txn(
        &self,
        operation: &'static str,
        ops: &[TxnOp],
    ) -> Result<std::result::Result<Vec<Entry>, Rollback>> {
        let body = serde_json::to_vec(ops).map_err(|e| Error::Backend(Box::new(e)))?;
        let url = "/v1/txn".to_owned();
        let response = self
            .send(operation, Method::PUT, &url, &[], Some(body), self.timeout)
            .await?;
        let status = response.status();
        if status == StatusCode::CONFLICT {
            let answer: TxnResponse = written_json(operation, self.timeout, response).await?;
            let error = answer
                .errors
                .and_then(|errors| errors.into_iter().next())
                .map_or_else(|| "rolled back".to_owned(), |e| e.what);
            return Ok(Err(Rollback { what: error }));
        }
        let answer: TxnResponse =
            written_json(operation, self.timeout, check(response).await?).await?;
        Ok(Ok(answer
            .results
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.kv)
            .collect()))
    }

    /// Creates a session whose keys are deleted when it ends; returns its ID.
    pub async fn create_session(&self, spec: &SessionSpec) -> Result<String> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Create<'a> {
            name: &'a str,
            #[serde(rename = "TTL")]
            ttl: String,
            behavior: &'a str,
            lock_delay: &'a str,
            checks: [&'a str; 0],
        }
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        let body = serde_json::to_vec(&Create {
            name: spec.name,
            ttl: format!("{}ms", spec.ttl.as_millis()),
            behavior: "delete",
            lock_delay: "0s",
            checks: [],
        })
        .map_err(|e| Error::Backend(Box::new(e)))?;
        let url = "/v1/session/create".to_owned();
        let response = self
            .send(
                "create a session",
                Method::PUT,
                &url,
                &[],
                Some(body),
                self.timeout,
            )
            .await?;
        let created: Created =
            json("create a session", self.timeout, check(response).await?).await?;
        Ok(created.id)
    }

    /// Renews a session; `false` if Consul no longer knows it (it expired or was destroyed).
    pub async fn renew_session(&self, id: &str) -> Result<bool> {
        Ok(self.renew_session_ttl(id).await?.is_some())
    }

    /// Renews a session; its TTL, or `None` if it no longer exists.
    pub async fn renew_session_ttl(&self, id: &str) -> Result<Option<Duration>> {
        #[derive(serde::Deserialize)]
        struct Renewed {
            #[serde(rename = "TTL")]
            ttl: String,
        }
        let url = format!("/v1/session/renew/{id}");
        let response = self
            .send(
                "renew a session",
                Method::PUT,
                &url,
                &[],
                None,
                self.timeout,
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let sessions: Vec<Renewed> =
            json("renew a session", self.timeout, check(response).await?).await?;
        let ttl = sessions.first().map(|s| s.ttl.as_str()).unwrap_or("");
        humantime::parse_duration(ttl).map(Some).map_err(|e| {
            Error::unavailable(
                format!("Consul renewed a session with TTL {ttl:?}: {e}"),
                None,
            )
        })
    }

    /// Destroys a session, deleting the keys it holds.
    pub async fn destroy_session(&self, id: &str) -> Result<()> {
        let url = format!("/v1/session/destroy/{id}");
        let response = self
            .send(
                "destroy a session",
                Method::PUT,
                &url,
                &[],
                None,
                self.timeout,
            )
            .await?;
        check(response).await.map(drop)
    }

    /// The server's shortest session TTL, read from the error a too-short TTL gets (no session
    /// is created); `None` if the answer does not say (an ACL token without session rights).
    /// The agent's own `session_ttl_min` (`/v1/agent/self`, which needs no leader and logs no
    /// error); `None` if the token may not read the agent (`agent:read`) or it does not say.
    pub async fn agent_session_ttl_min(&self) -> Result<Option<Duration>> {
        let url = "/v1/agent/self".to_owned();
        let response = self
            .send("read the agent", Method::GET, &url, &[], None, self.timeout)
            .await?;
        if matches!(
            response.status(),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED
        ) {
            return Ok(None);
        }
        let agent: serde_json::Value =
            json("read the agent", self.timeout, check(response).await?).await?;
        Ok(agent
            .pointer("/DebugConfig/SessionTTLMin")
            .and_then(|v| v.as_str())
            // Go's format (`10s`, `1m0s`, `1.5s`), which humantime reads.
            .and_then(|text| humantime::parse_duration(text).ok()))
    }

    /// Checks that the agent answers and takes the token, with a stale read of `key` (any
    /// server answers one, leader or not).
    pub async fn probe(&self, key: &str) -> Result<()> {
        let url = self.kv_path(key);
        let query = [("stale", String::new())];
        let response = self
            .send("open", Method::GET, &url, &query, None, self.timeout)
            .await?;
        if response.status() != StatusCode::NOT_FOUND {
            check(response).await?;
        }
        Ok(())
    }

    /// The server's shortest session TTL, learned by asking for a 1 ns session (needs a
    /// leader; the agent logs an error): the fallback when the agent's config cannot be read.
    pub async fn session_ttl_min(&self) -> Result<Option<Duration>> {
        let url = "/v1/session/create".to_owned();
        let body = br#"{"TTL":"1ns","Name":"kv probe"}"#.to_vec();
        let response = self
            .send(
                "probe the session TTL",
                Method::PUT,
                &url,
                &[],
                Some(body),
                self.timeout,
            )
            .await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            // A server without a minimum: destroy what was just made.
            if let Ok(created) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(id) = created.get("ID").and_then(|v| v.as_str())
            {
                self.destroy_session(id).await?;
            }
            return Ok(Some(Duration::from_millis(1)));
        }
        if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
            return Err(Error::Auth {
                message: format!("Consul refused the request: {}", text.trim()),
            });
        }
        // "Invalid Session TTL '1', must be between [10s=24h0m0s]"
        Ok(text
            .split_once("between [")
            .and_then(|(_, rest)| rest.split_once('='))
            .and_then(|(min, _)| humantime::parse_duration(min).ok()))
    }
}

/// Consul's `X-Consul-Index` of a response (0 if absent).
fn consul_index(response: &Response) -> u64 {
    response
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Turns an unsuccessful status into kv's error.
/// A 500 that Consul gives before doing anything: no leader (an election is under way), a node
/// not yet registered (an agent that just started), or no connection to the server that
/// should handle the request (it is down: nothing was sent).
fn nothing_done(text: &str) -> bool {
    text.contains("No cluster leader")
        || text.contains("Missing node registration")
        || text.contains("rpc error getting client")
        || text.contains("failed to get conn")
}

/// A 500 from an agent that has no working connection to a server (another agent may).
fn cannot_reach_a_server(text: &str) -> bool {
    text.contains("rpc error getting client") || text.contains("failed to get conn")
}

/// A 500 for a request forwarded to a server that failed before answering: it may have been
/// applied.
fn is_lost_answer(text: &str) -> bool {
    text.contains("rpc error making call") && !nothing_done(text)
}

async fn check(response: Response) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let text = text.trim();
    Err(match status {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Error::Auth {
            message: format!("Consul refused the request ({status}): {text}"),
        },
        StatusCode::PAYLOAD_TOO_LARGE => {
            Error::invalid_argument(format!("Consul refused the request as too large: {text}"))
        }
        s if s.is_server_error() => {
            Error::unavailable(format!("Consul answered {status}: {text}"), None)
        }
        _ => Error::Backend(format!("Consul answered {status}: {text}").into()),
    })
}

async fn json<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    timeout: Duration,
    response: Response,
) -> Result<T> {
    let body = response
        .bytes()
        .await
        .map_err(|e| transport(operation, timeout, e))?;
    serde_json::from_slice(&body).map_err(|e| Error::Backend(Box::new(e)))
}

/// The JSON answer to a write: a body that cannot be read once the answer began means the
/// write was done or refused, and the caller cannot know which.
async fn written_json<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    timeout: Duration,
    response: Response,
) -> Result<T> {
    json(operation, timeout, response)
        .await
        .map_err(|error| match error {
            Error::Unavailable { .. } => Error::OutcomeUnknown {
                operation,
                reason: format!("the answer was cut off ({error})"),
            },
            other => other,
        })
}

/// A failed request: timeouts are `Timeout`, everything else `Unavailable`.
fn transport(operation: &'static str, after: Duration, error: reqwest::Error) -> Error {
    if error.is_timeout() {
        return Error::Timeout { operation, after };
    }
    // reqwest's message includes the URL, which never holds a secret (the token is a header).
    Error::unavailable(
        format!("cannot reach Consul to {operation}; check the address and that the agent runs"),
        Some(Box::new(error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_durations_are_read_by_humantime() {
        // The forms Consul's `SessionTTLMin` takes (Go's time.Duration printing).
        for (text, expected) in [
            ("10s", Duration::from_secs(10)),
            ("1m0s", Duration::from_secs(60)),
            ("1.5s", Duration::from_millis(1500)),
            ("500ms", Duration::from_millis(500)),
            ("1h0m0s", Duration::from_secs(3600)),
        ] {
            assert_eq!(
                humantime::parse_duration(text).ok(),
                Some(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn consul_500s_are_told_apart() {
        assert!(nothing_done("No cluster leader"));
        assert!(nothing_done(
            "rpc error making call: Missing node registration"
        ));
        assert!(nothing_done(
            "rpc error making call: rpc error getting client: failed to get conn: connection refused"
        ));
        assert!(!nothing_done(
            "Invalid Session TTL '1', must be between [10s=24h0m0s]"
        ));
        assert!(is_lost_answer("rpc error making call: EOF"));
        assert!(!is_lost_answer("rpc error making call: No cluster leader"));
        assert!(!is_lost_answer("Invalid Session TTL"));
    }
}
