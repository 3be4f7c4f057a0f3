//! Typed configuration: what a `redis://` URL says, built in code ([`RedisOptions`]).

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kv_core::backend::{HandleState, Holdings};
use kv_core::{Capabilities, Error, HostPort, Result, Secret, StoreUrl, Tls, TtlSupport};
use redis::RedisConnectionInfo;
use tokio::sync::Notify;

use crate::{
    DEFAULT_HISTORY, DEFAULT_TIMEOUT, Inner, MAX_TXN_OPS, MAX_VALUE_BYTES, RedisStore, native, node,
};

/// Where the data node is.
#[derive(Clone)]
enum Target {
    /// One server, `host:port`.
    Server(String),
    /// The primary the Sentinels name for `service`.
    Sentinels {
        sentinels: Vec<String>,
        service: String,
    },
    /// A client the caller built (address, credentials, database and TLS are its own).
    Client(redis::Client),
}

/// How to reach Redis: one server, the Sentinels of a service, or a `redis::Client` of your
/// own; database, credentials, root, timeout, history, replicas to wait for, layout and TLS.
/// Built in code or parsed from a `redis://` URL; [`RedisOptions::connect`] opens the store.
///
/// ```no_run
/// # async fn demo() -> kv_core::Result<()> {
/// use kv_redis::RedisOptions;
/// let store = RedisOptions::sentinel(["10.0.0.1:26379", "10.0.0.2:26379"], "main")
///     .password(kv_core::Secret::from_env("REDIS_PASSWORD")?)
///     .root("app")
///     .wait_replicas(1)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisOptions {
    target: Target,
    db: i64,
    username: Option<String>,
    password: Option<Secret>,
    root: String,
    timeout: Duration,
    history: usize,
    wait_replicas: Option<usize>,
    /// `layout=native`, with its poll interval.
    native: Option<Duration>,
    tls: Option<Tls>,
}

impl RedisOptions {
    fn at(target: Target) -> RedisOptions {
        RedisOptions {
            target,
            db: 0,
            username: None,
            password: None,
            root: String::new(),
            timeout: DEFAULT_TIMEOUT,
            history: DEFAULT_HISTORY,
            wait_replicas: None,
            native: None,
            tls: None,
        }
    }

    /// One server at `host[:port]` (port 6379 if none), database 0, no root.
    pub fn new(server: impl Into<String>) -> RedisOptions {
        RedisOptions::at(Target::Server(server.into()))
    }

    /// The primary that these Sentinels (`host[:port]`, port 26379 if none) name for
    /// `service`, followed through failovers. Sentinels are asked without credentials; the
    /// credentials given are for the data nodes.
    pub fn sentinel<I: IntoIterator<Item = S>, S: Into<String>>(
        sentinels: I,
        service: impl Into<String>,
    ) -> RedisOptions {
        RedisOptions::at(Target::Sentinels {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            service: service.into(),
        })
    }

    /// The server of a client you configured yourself (TLS from your own certificates, a
    /// Unix socket, credentials): its address, database, credentials and TLS are used as they
    /// are, so [`db`](Self::db), [`password`](Self::password) and [`tls`](Self::tls) do not
    /// apply. No Sentinel failover (use [`RedisOptions::sentinel`] for that).
    ///
    /// ```no_run
    /// # async fn demo() -> kv_core::Result<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/2")
    ///     .map_err(|e| kv_core::Error::Backend(Box::new(e)))?;
    /// let store = kv_redis::RedisOptions::with_client(client).root("app").connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_client(client: redis::Client) -> RedisOptions {
        let db = client.get_connection_info().redis_settings().db();
        RedisOptions {
            db,
            ..RedisOptions::at(Target::Client(client))
        }
    }

    /// The options a `redis://`, `rediss://`, `redis+sentinel://` or `rediss+sentinel://` URL
    /// gives (see the crate docs).
    pub fn from_url(url: &StoreUrl) -> Result<RedisOptions> {
        let sentinel = match url.scheme.as_str() {
            "redis" | "rediss" => false,
            "redis+sentinel" | "rediss+sentinel" => true,
            other => {
                return Err(Error::invalid_url(format!(
                    "kv-redis opens redis://, rediss://, redis+sentinel:// and rediss+sentinel:// \
                     URLs, not {other}://"
                )));
            }
        };
        let mut known = vec![
            "root",
            "timeout",
            "history",
            "wait_replicas",
            "layout",
            "poll",
        ];
        if sentinel {
            known.push("db");
        }
        known.extend(StoreUrl::TLS_OPTIONS);
        url.check_options(&known)?;
        let tls = url.tls(if sentinel {
            "rediss+sentinel"
        } else {
            "rediss"
        })?;
        let number = |what: &str, text: &str| {
            text.parse::<i64>().map_err(|_| {
                Error::invalid_url(format!("the database {text:?} is not a number ({what})"))
            })
        };
        let (db, target) = if sentinel {
            if url.hosts.is_empty() || url.path.is_empty() || url.path.contains('/') {
                return Err(Error::invalid_url(
                    "redis+sentinel:// takes the Sentinels and the service name: \
                     redis+sentinel://host:26379[,host:26379...]/service[?db=N]",
                ));
            }
            let db = url
                .option("db")
                .map(|db| number("option db", db))
                .transpose()?;
            let sentinels = url
                .hosts
                .iter()
                .map(|h| h.address(node::SENTINEL_PORT))
                .collect();
            (
                db.unwrap_or(0),
                Target::Sentinels {
                    sentinels,
                    service: url.path.clone(),
                },
            )
        } else {
            if url.hosts.len() != 1 {
                return Err(Error::invalid_url(
                    "redis:// takes exactly one host: redis://host:6379[/db] (for failover, \
                     list your Sentinels: redis+sentinel://host:26379,.../service)",
                ));
            }
            let db = match url.path.as_str() {
                "" => 0,
                db => number("the URL path", db)?,
            };
            (db, Target::Server(url.hosts[0].address(6379)))
        };
        let root = kv_core::Prefix::parse(url.option("root").unwrap_or(""))
            .map_err(|e| Error::invalid_url(format!("option root: {e}")))?;
        let native = match url.choice_option("layout", &["native"])? {
            Some(_) => Some(url.duration_option("poll")?.unwrap_or(native::DEFAULT_POLL)),
            None => None,
        };
        Ok(RedisOptions {
            target,
            db,
            username: url.username.clone(),
            password: url.password.clone(),
            root: root.as_str().to_owned(),
            timeout: url.duration_option("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
            history: url.parse_option("history")?.unwrap_or(DEFAULT_HISTORY),
            wait_replicas: url.parse_option::<usize>("wait_replicas")?,
            native,
            tls,
        })
    }

    /// The database number (default 0).
    pub fn db(mut self, db: i64) -> RedisOptions {
        self.db = db;
        self
    }

    /// Authenticates with this password (`AUTH password`, the `default` user).
    pub fn password(mut self, password: Secret) -> RedisOptions {
        self.password = Some(password);
        self
    }

    /// Authenticates as an ACL user (`AUTH user password`).
    pub fn credentials(mut self, user: impl Into<String>, password: Secret) -> RedisOptions {
        self.username = Some(user.into());
        self.password = Some(password);
        self
    }

    /// Keys live under this prefix (Redis keys `kv{root}...`).
    pub fn root(mut self, root: impl Into<String>) -> RedisOptions {
        self.root = root.into();
        self
    }

    /// The longest any call may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> RedisOptions {
        self.timeout = timeout;
        self
    }

    /// Change records kept for `since` and for watchers that fall behind (default 10,000).
    pub fn history(mut self, records: usize) -> RedisOptions {
        self.history = records;
        self
    }

    /// Every write waits (`WAIT`) until this many replicas have it (0: none).
    pub fn wait_replicas(mut self, replicas: usize) -> RedisOptions {
        self.wait_replicas = Some(replicas);
        self
    }

    /// Values as plain strings at `<root>/<key>`, where `redis-cli` reads and writes them,
    /// watched by polling every `poll` (`layout=native`; no history, transactions or leases).
    pub fn native_layout(mut self, poll: Duration) -> RedisOptions {
        self.native = Some(poll);
        self
    }

    /// TLS ([`Tls::new`] trusts the system roots).
    pub fn tls(mut self, tls: Tls) -> RedisOptions {
        self.tls = Some(tls);
        self
    }

    /// Connects (asking the Sentinels first, if any) and checks that the server answers and
    /// is not a Redis Cluster node (as [`RedisStore::open`] does).
    pub async fn connect(self) -> Result<RedisStore> {
        let root = kv_core::Prefix::parse(&self.root)?;
        let timeout = self.timeout;
        let shown = self.to_string();
        let (connector, sentinels, node) = match &self.target {
            Target::Client(client) => {
                let connector = node::Connector {
                    settings: client.get_connection_info().redis_settings().clone(),
                    tls: None,
                    timeout,
                };
                let node = connector.node_of(client.clone(), timeout * 2).await?;
                (connector, None, node)
            }
            Target::Server(server) => {
                let connector = self.connector();
                let host = HostPort::parse(server)?;
                let address = (host.host, host.port.unwrap_or(6379));
                let node = connector.node(address, timeout * 2).await?;
                (connector, None, node)
            }
            Target::Sentinels { sentinels, service } => {
                if sentinels.is_empty() {
                    return Err(Error::invalid_argument(
                        "RedisOptions::sentinel needs at least one Sentinel (host:26379)",
                    ));
                }
                let addresses = sentinels
                    .iter()
                    .map(|spec| {
                        HostPort::parse(spec)
                            .map(|h| (h.host, h.port.unwrap_or(node::SENTINEL_PORT)))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let connector = self.connector();
                let sentinels = node::Sentinels::new(addresses, service.clone());
                // Connecting may take two timeouts: asking the Sentinels, then the primary.
                let address = sentinels.primary(&connector, timeout).await?;
                let node = connector.node(address, timeout * 2).await?;
                (connector, Some(sentinels), node)
            }
        };
        let mut capabilities = Capabilities::full("redis", MAX_VALUE_BYTES);
        capabilities.ttl = Some(TtlSupport {
            min: Duration::from_millis(1),
            granularity: Duration::from_millis(1),
        });
        capabilities.max_txn_ops = MAX_TXN_OPS;
        // A list reads 1,000 keys per script call (`SCAN` on the native layout): a longer
        // one is not one snapshot.
        capabilities.snapshot_lists = false;
        let native = self.native.map(|poll| {
            capabilities.watch_history = false;
            capabilities.watch_coalesces = true;
            capabilities.atomic_delete_tree = false;
            // Plain strings have no version to check in a script; not yet.
            capabilities.max_txn_ops = 0;
            // Not yet: a lease would need its keys' Redis expiry moved together.
            capabilities.leases = false;
            capabilities.attach_leases = false;
            native::Native::new(root.as_str(), self.db, poll.max(Duration::from_millis(1)))
        });
        let inner = Arc::new(Inner {
            node: RwLock::new(Arc::new(node)),
            connector,
            sentinels,
            wait_replicas: self.wait_replicas.filter(|n| *n > 0),
            prefix: format!("kv{{{}}}", root.as_str()),
            history: self.history.max(1),
            timeout,
            capabilities,
            closed: HandleState::default(),
            held: Holdings::default(),
            leases: Holdings::default(),
            reaper: Notify::new(),
            native,
            shown,
        });
        RedisStore::over(inner).await
    }

    /// How to reach data nodes with these credentials, database and TLS.
    fn connector(&self) -> node::Connector {
        let mut settings = RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.expose());
        }
        node::Connector {
            settings,
            tls: self.tls.clone(),
            timeout: self.timeout,
        }
    }
}

/// The options as a URL, without secrets: `redis+sentinel://user:***@host:26379/main?db=0`.
impl fmt::Display for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secure = if self.tls.is_some() { "s" } else { "" };
        let user = match (&self.username, &self.password) {
            (Some(user), _) => format!("{user}:***@"),
            (None, Some(_)) => ":***@".to_owned(),
            (None, None) => String::new(),
        };
        let joiner = match &self.target {
            Target::Server(server) => {
                let server = HostPort::join(std::slice::from_ref(server), 6379);
                write!(f, "redis{secure}://{user}{server}/{}", self.db)?;
                '?'
            }
            Target::Sentinels { sentinels, service } => {
                let sentinels = HostPort::join(sentinels, node::SENTINEL_PORT);
                write!(
                    f,
                    "redis{secure}+sentinel://{user}{sentinels}/{service}?db={}",
                    self.db
                )?;
                '&'
            }
            Target::Client(client) => {
                write!(
                    f,
                    "redis (a client given: {})",
                    client.get_connection_info().addr()
                )?;
                ' '
            }
        };
        if !self.root.is_empty() {
            write!(f, "{joiner}root={}", self.root)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("target", &self.to_string())
            .field("timeout", &self.timeout)
            .field("history", &self.history)
            .field("wait_replicas", &self.wait_replicas)
            .field("native", &self.native)
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_and_the_builder_say_the_same_without_secrets() -> Result<()> {
        let parsed =
            RedisOptions::from_url(&"redis+sentinel://u:pw@s1,s2/main?db=3&root=svc".parse()?)?;
        let built = RedisOptions::sentinel(["s1:26379", "s2:26379"], "main")
            .db(3)
            .credentials("u", Secret::new("pw"))
            .root("svc");
        assert_eq!(
            parsed.to_string(),
            "redis+sentinel://u:***@s1:26379,s2:26379/main?db=3&root=svc"
        );
        assert_eq!(built.to_string(), parsed.to_string());
        for shown in [format!("{parsed:?}"), format!("{built:?}")] {
            assert!(!shown.contains("pw"), "{shown}");
        }
        Ok(())
    }
}
