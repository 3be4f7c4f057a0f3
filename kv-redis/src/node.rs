//! Where calls go and how they are made: one Redis server (`redis://`), or the primary that
//! Redis Sentinel names (`redis+sentinel://`), followed through failovers; scripts sent by
//! `EVALSHA` (loaded on `NOSCRIPT`), optionally followed by `WAIT` for replicas; retries within
//! the call's budget ([`kv_core::backend::Budget`]) where nothing can have been applied twice.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::Budget;
use kv_core::{Error, Result, Tls};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, FromRedisValue, IntoConnectionInfo,
    RedisConnectionInfo, Script, ToRedisArgs,
};
use tokio::time::Instant;

use crate::{Inner, map_error};

/// Default Sentinel port.
pub const SENTINEL_PORT: u16 = 26379;

/// How to reach a Redis node: credentials, database, TLS, timeouts.
pub(crate) struct Connector {
    pub settings: RedisConnectionInfo,
    pub tls: Option<Tls>,
    pub timeout: Duration,
}

/// One data node: its address, a client (for connections of their own, as watches need) and
/// the shared multiplexed connection, which reconnects by itself.
pub(crate) struct Node {
    pub address: (String, u16),
    pub client: redis::Client,
    pub conn: ConnectionManager,
}

impl Connector {
    /// A client of `host:port` with `settings`.
    fn client(
        &self,
        host: &str,
        port: u16,
        settings: RedisConnectionInfo,
    ) -> Result<redis::Client> {
        let address = match &self.tls {
            None => ConnectionAddr::Tcp(host.to_owned(), port),
            Some(_) => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            },
        };
        let info = address
            .into_connection_info()
            .map_err(map_error)?
            .set_redis_settings(settings);
        match &self.tls {
            None => redis::Client::open(info),
            Some(files) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: files
                        .identity
                        .as_ref()
                        .map(|(cert, key)| redis::ClientTlsConfig {
                            client_cert: cert.clone(),
                            client_key: key.expose().as_bytes().to_vec(),
                        }),
                    root_cert: files.ca.clone(),
                },
            ),
        }
        .map_err(map_error)
    }

    /// Connects to the data node `host:port` within `within`.
    pub async fn node(&self, (host, port): (String, u16), within: Duration) -> Result<Node> {
        let client = self.client(&host, port, self.settings.clone())?;
        self.node_of(client, within).await
    }

    /// Connects to the data node of `client` within `within`.
    pub async fn node_of(&self, client: redis::Client, within: Duration) -> Result<Node> {
        let address = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            other => (other.to_string(), 0),
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(within, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| Error::Timeout {
                operation: "connect",
                after: within,
            })?
            .map_err(map_error)?;
        Ok(Node {
            address,
            client,
            conn,
        })
    }
}

/// The Sentinels of a `redis+sentinel://` store and the service they monitor.
pub(crate) struct Sentinels {
    /// Every Sentinel, all asked at once.
    addresses: Vec<(String, u16)>,
    service: String,
    /// One discovery at a time, and when the last one ended.
    following: tokio::sync::Mutex<Option<Instant>>,
}

impl Sentinels {
    pub fn new(addresses: Vec<(String, u16)>, service: String) -> Sentinels {
        Sentinels {
            addresses,
            service,
            following: tokio::sync::Mutex::new(None),
        }
    }

    /// Where the Sentinels say the primary is: all are asked at once, each within what is
    /// left of `within`, and the first to name one answers (a Sentinel that is down or cut off
    /// costs nothing while another answers).
    pub async fn primary(&self, connector: &Connector, within: Duration) -> Result<(String, u16)> {
        use futures::StreamExt as _;
        let mut asking: futures::stream::FuturesUnordered<_> = self
            .addresses
            .iter()
            .map(|(host, port)| async move {
                let answer = tokio::time::timeout(within, self.ask(connector, host, *port)).await;
                (host, port, answer)
            })
            .collect();
        let mut failures = Vec::new();
        while let Some((host, port, answer)) = asking.next().await {
            match answer {
                Ok(Ok(Some(primary))) => return Ok(primary),
                Ok(Ok(None)) => {
                    failures.push(format!("{host}:{port} does not monitor {:?}", self.service))
                }
                Ok(Err(e)) => failures.push(format!("{host}:{port}: {e}")),
                Err(_) => failures.push(format!("{host}:{port}: no answer within {within:?}")),
            }
        }
        Err(Error::unavailable(
            format!(
                "no Sentinel named the primary of {:?}: {}",
                self.service,
                failures.join("; ")
            ),
            None,
        ))
    }

    async fn ask(
        &self,
        connector: &Connector,
        host: &str,
        port: u16,
    ) -> Result<Option<(String, u16)>> {
        let client = connector.client(host, port, RedisConnectionInfo::default())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connector.timeout))
            .set_response_timeout(Some(connector.timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(map_error)?;
        let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.service)
            .query_async(&mut conn)
            .await
            .map_err(map_error)?;
        Ok(answer)
    }
}

/// True if `conn` is a primary (`ROLE`), as Sentinel's client rules ask to check after
/// connecting to the address a Sentinel gave.
async fn is_primary(conn: &mut ConnectionManager) -> Result<bool> {
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query_async(conn)
        .await
        .map_err(map_error)?;
    Ok(matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master"))
}

/// A script call being put together: the script, its `EVALSHA` command with the arguments
/// written straight into it (sent as it is, again after a `NOSCRIPT`), and whether it writes.
pub(crate) struct Call<'a> {
    script: &'a Script,
    evalsha: Cmd,
    write: bool,
}

impl<'a> Call<'a> {
    pub fn new(script: &'a Script, write: bool) -> Call<'a> {
        // Room for a point write's arguments (a larger value grows it once).
        let mut evalsha = Cmd::with_capacity(12, 256);
        evalsha.arg("EVALSHA").arg(script.get_hash()).arg(0);
        Call {
            script,
            evalsha,
            write,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.evalsha.arg(arg);
        self
    }
}

/// Why an attempt failed.
enum Failed {
    Redis(redis::RedisError),
    TimedOut,
}

impl Inner {
    /// The node calls go to now.
    pub fn node(&self) -> Arc<Node> {
        self.node.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs a script; a write is followed by `WAIT` when the store asks for replicas
    /// (`wait_replicas`), and fails with [`Error::OutcomeUnknown`] if fewer confirm it in time;
    /// a read then goes through the replication barrier ([`Inner::read`]).
    pub async fn invoke<T: FromRedisValue>(
        &self,
        operation: &'static str,
        call: Call<'_>,
    ) -> Result<T> {
        if !call.write && self.wait_replicas.is_some() {
            return self
                .read_through(operation, &call.evalsha, Some(call.script))
                .await;
        }
        let wait = self.wait_replicas.filter(|_| call.write);
        let call = &call;
        let (value, confirmed): (T, usize) = self
            .attempt(operation, call.write, |mut conn, left| async move {
                let send = |mut conn: ConnectionManager| async move {
                    let Some(replicas) = wait else {
                        return call
                            .evalsha
                            .query_async::<T>(&mut conn)
                            .await
                            .map(|v| (v, 0));
                    };
                    redis::pipe()
                        .add_command(call.evalsha.clone())
                        .cmd("WAIT")
                        .arg(replicas)
                        .arg(millis(left))
                        .query_async::<(T, usize)>(&mut conn)
                        .await
                };
                match send(conn.clone()).await {
                    Err(e) if is_noscript(&e) => {
                        call.script.load_async(&mut conn).await?;
                        send(conn).await
                    }
                    other => other,
                }
            })
            .await?;
        match wait {
            Some(replicas) if confirmed < replicas => Err(Error::OutcomeUnknown {
                operation,
                reason: format!(
                    "applied on the primary, but {confirmed} of the {replicas} replicas asked \
                     for (wait_replicas) confirmed it within {:?}: a failover now could lose it",
                    self.timeout
                ),
            }),
            _ => Ok(value),
        }
    }

    /// Runs a command that changes nothing (it is retried like a read).
    pub async fn run<T: FromRedisValue>(&self, operation: &'static str, cmd: Cmd) -> Result<T> {
        let cmd = &cmd;
        self.attempt(operation, false, |mut conn, _| async move {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// Reads data: [`Inner::run`], and with `wait_replicas=N` behind a replication barrier, so
    /// that it returns only what N replicas have — what a failover keeps. The command is
    /// followed by a `PUBLISH` (which Redis replicates, moving this connection's replication
    /// offset past every write the read saw) and `WAIT N`; fewer confirmations in time, or a
    /// node that turned out to be a replica, and the read is tried again (on the primary the
    /// Sentinels name) within the budget. Without it a read could return a write whose own
    /// `WAIT` failed and which a failover then lost, and a watch could deliver it.
    pub async fn read<T: FromRedisValue>(&self, operation: &'static str, cmd: Cmd) -> Result<T> {
        match self.wait_replicas {
            Some(_) => self.read_through(operation, &cmd, None).await,
            None => self.run(operation, cmd).await,
        }
    }

    /// [`Inner::read`]'s barrier around `cmd`, an `EVALSHA` of `script` (loaded again after a
    /// `NOSCRIPT`) or a plain command.
    async fn read_through<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &Cmd,
        script: Option<&Script>,
    ) -> Result<T> {
        let replicas = self.wait_replicas.unwrap_or(0);
        self.attempt(operation, false, |mut conn, left| async move {
            let send = |mut conn: ConnectionManager| async move {
                redis::pipe()
                    .add_command(cmd.clone())
                    .cmd("PUBLISH")
                    .arg(BARRIER_CHANNEL)
                    .arg("")
                    .cmd("WAIT")
                    .arg(replicas)
                    .arg(millis(left))
                    .query_async::<(T, redis::Value, usize)>(&mut conn)
                    .await
            };
            let (value, _, confirmed) = match (send(conn.clone()).await, script) {
                (Err(e), Some(script)) if is_noscript(&e) => {
                    script.load_async(&mut conn).await?;
                    send(conn).await?
                }
                (other, _) => other?,
            };
            if confirmed < replicas {
                // Transient: the caller asks the Sentinels and tries again.
                return Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{confirmed} of the {replicas} replicas asked for (wait_replicas) \
                         confirmed the data read"
                    ),
                )));
            }
            Ok(value)
        })
        .await
    }

    /// Makes one call within the store's timeout, on the node calls go to now. A read is tried
    /// again (with backoff, within the budget) after a transient failure; a write only when
    /// nothing was applied (connection refused, or a replica's `READONLY`). With Sentinel, a
    /// failure that can mean a failover first asks the Sentinels where the primary is.
    async fn attempt<T, F, Fut>(&self, operation: &'static str, write: bool, call: F) -> Result<T>
    where
        F: Fn(ConnectionManager, Duration) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let mut budget = Budget::new(self.timeout);
        loop {
            let node = self.node();
            // With Sentinel, a read keeps half of what is left for the next primary.
            let slice = match (&self.sentinels, write) {
                (Some(_), false) => budget.remaining() / 2,
                _ => budget.remaining(),
            };
            let failed = match tokio::time::timeout(slice, call(node.conn.clone(), slice)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => Failed::Redis(error),
                Err(_) => Failed::TimedOut,
            };
            let nothing_applied = matches!(&failed,
                Failed::Redis(e) if e.is_connection_refusal() || is_readonly(e));
            let transient = match &failed {
                Failed::TimedOut => true,
                Failed::Redis(e) => {
                    nothing_applied
                        || e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_timeout()
                        || e.code() == Some("LOADING")
                }
            };
            if transient {
                // Best effort: if no Sentinel answers, the next attempt says so.
                // Boxed: the rare path would otherwise make every call's future kilobytes big.
                let _ = Box::pin(self.follow(&node, &budget)).await;
            }
            if transient && (!write || nothing_applied) && budget.pause().await {
                continue;
            }
            return Err(match failed {
                Failed::TimedOut => Error::Timeout {
                    operation,
                    after: self.timeout,
                },
                Failed::Redis(e)
                    if write
                        && !nothing_applied
                        && !e.is_timeout()
                        && (e.is_io_error() || e.is_connection_dropped()) =>
                {
                    Error::OutcomeUnknown {
                        operation,
                        reason: format!("the connection to Redis failed during the call: {e}"),
                    }
                }
                Failed::Redis(e) => map_error(e).timed_out_as(operation, self.timeout),
            });
        }
    }

    /// With Sentinel: asks where the primary is and, when it moved away from `seen`, connects
    /// to the new one (checking with `ROLE` that it is a primary) and sends every later call
    /// there. Concurrent callers wait for one discovery; one was made less than 100 ms ago is
    /// not repeated.
    async fn follow(&self, seen: &Arc<Node>, budget: &Budget) -> Result<()> {
        let Some(sentinels) = &self.sentinels else {
            return Ok(());
        };
        let mut last = tokio::time::timeout(budget.remaining(), sentinels.following.lock())
            .await
            .map_err(|_| Error::Timeout {
                operation: "sentinel",
                after: budget.total(),
            })?;
        let recent = last.is_some_and(|at| at.elapsed() < Duration::from_millis(100));
        if !Arc::ptr_eq(&self.node(), seen) || recent {
            return Ok(());
        }
        let outcome = async {
            let address = sentinels
                .primary(&self.connector, budget.remaining())
                .await?;
            if address == seen.address {
                return Ok(());
            }
            let mut node = self.connector.node(address, budget.remaining()).await?;
            if !is_primary(&mut node.conn).await? {
                return Err(Error::unavailable(
                    format!(
                        "Sentinel names {}:{} as the primary, but it is not one (yet)",
                        node.address.0, node.address.1
                    ),
                    None,
                ));
            }
            *self.node.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(node);
            Ok(())
        }
        .await;
        *last = Some(Instant::now());
        outcome
    }
}

/// A replica refusing a write (or the `WAIT` after it: a node demoted since the handle
/// connected runs a script that wrote nothing, then refuses `WAIT`): nothing was applied.
fn is_readonly(error: &redis::RedisError) -> bool {
    let text = error.to_string();
    error.code() == Some("READONLY")
        || text.contains("READONLY")
        || text.contains("WAIT cannot be used with replica instances")
}

/// The script cache of the node did not have the script (a restart, a failover).
fn is_noscript(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// A `WAIT` timeout: what is left of the budget, in ms (at least 1: 0 would wait forever).
fn millis(left: Duration) -> u64 {
    u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The channel of the replication barrier's `PUBLISH` (no one listens).
const BARRIER_CHANNEL: &str = "kv:barrier";

#[cfg(test)]
mod tests {
    use super::*;

    /// A node demoted since the handle connected refuses the `WAIT` after a script that wrote
    /// nothing: like `READONLY`, nothing was applied (the call follows the new primary and is
    /// sent again) — not an untyped error (found by the Sentinel robustness run).
    #[test]
    fn wait_refused_by_a_replica_means_nothing_was_applied() {
        let refused = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 \
             if a replica is configured to be writable (which is not the default) writes to \
             replicas are just local and are not propagated."
                .to_owned(),
        ));
        assert!(is_readonly(&refused), "{refused}");
        let other = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "ERR unknown command".to_owned(),
        ));
        assert!(!is_readonly(&other));
    }
}
