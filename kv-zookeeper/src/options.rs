//! Typed configuration: what a `zookeeper://` URL says, built in code ([`ZooKeeperOptions`]).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv_core::backend::{HandleState, Holdings};
use kv_core::{Capabilities, Error, HostPort, Result, Secret, StoreUrl, Tls, TtlSupport};
use zookeeper_client as zk;

use crate::layout::Layout;
use crate::{
    Connection, DEFAULT_BASE, DEFAULT_SESSION_TIMEOUT, DEFAULT_TIMEOUT, Inner, MAX_TXN_OPS,
    MAX_VALUE_BYTES, ZooKeeperStore, timed,
};

/// How to reach a ZooKeeper ensemble: servers, base path, timeouts, digest credentials, TLS.
/// Built in code or parsed from a `zookeeper://` URL; [`ZooKeeperOptions::connect`] opens the
/// store. (The store opens sessions of its own for locks and leases, so it takes settings,
/// not a client.)
///
/// ```no_run
/// # async fn demo(ca: String) -> kv_core::Result<()> {
/// use kv_zookeeper::ZooKeeperOptions;
/// let store = ZooKeeperOptions::new(["10.0.0.1:2181", "10.0.0.2:2181", "10.0.0.3:2181"])
///     .base("/services/kv")
///     .digest("app", kv_core::Secret::from_file("/run/secrets/zk")?)
///     .tls(kv_core::Tls::new().ca_pem(ca))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ZooKeeperOptions {
    servers: Vec<String>,
    base: String,
    timeout: Duration,
    session_timeout: Duration,
    max_value_bytes: usize,
    sync_reads: Option<bool>,
    auth: Option<(String, Secret)>,
    tls: Option<Tls>,
    native: bool,
    reclaim_after: Option<Duration>,
}

impl ZooKeeperOptions {
    /// The ensemble's servers as `host[:port]` (port 2181 if none), base `/kv`, default
    /// timeouts, plain connections.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(servers: I) -> ZooKeeperOptions {
        ZooKeeperOptions {
            servers: servers.into_iter().map(Into::into).collect(),
            base: DEFAULT_BASE.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            max_value_bytes: MAX_VALUE_BYTES,
            sync_reads: None,
            auth: None,
            tls: None,
            native: false,
            reclaim_after: None,
        }
    }

    /// The options a `zookeeper://` or `zookeepers://` URL gives (see the crate docs).
    pub fn from_url(url: &StoreUrl) -> Result<ZooKeeperOptions> {
        if url.scheme != "zookeeper" && url.scheme != "zookeepers" {
            return Err(Error::invalid_url(format!(
                "kv-zookeeper opens zookeeper:// and zookeepers:// URLs, not {}://",
                url.scheme
            )));
        }
        let mut known = vec![
            "timeout",
            "session_timeout",
            "max_value_bytes",
            "sync_reads",
            "layout",
            "reclaim_after",
        ];
        known.extend(StoreUrl::TLS_OPTIONS);
        url.check_options(&known)?;
        if url.hosts.is_empty() {
            return Err(Error::invalid_url(
                "zookeeper:// needs at least one server: zookeeper://host:2181[,host:2181][/base]",
            ));
        }
        let auth = match (&url.username, &url.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            _ => {
                return Err(Error::invalid_url(
                    "digest authentication needs both a user and a password: zookeeper://user:password@host",
                ));
            }
        };
        Ok(ZooKeeperOptions {
            servers: url.hosts.iter().map(|h| h.address(2181)).collect(),
            base: match url.root()?.as_str() {
                "" => DEFAULT_BASE.to_owned(),
                root => base_path(root).map_err(Error::invalid_url)?,
            },
            timeout: url.duration_option("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
            session_timeout: url
                .duration_option("session_timeout")?
                .unwrap_or(DEFAULT_SESSION_TIMEOUT),
            max_value_bytes: url
                .parse_option("max_value_bytes")?
                .unwrap_or(MAX_VALUE_BYTES),
            sync_reads: url.bool_option("sync_reads")?,
            auth,
            tls: url.tls("zookeepers")?,
            native: url.choice_option("layout", &["native"])?.is_some(),
            reclaim_after: url.duration_option("reclaim_after")?,
        })
    }

    /// The node under which every key lives (default `/kv`; not inside `/zookeeper`).
    pub fn base(mut self, base: impl Into<String>) -> ZooKeeperOptions {
        self.base = base.into();
        self
    }

    /// The longest any call may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> ZooKeeperOptions {
        self.timeout = timeout;
        self
    }

    /// The store's session timeout (default 10 s): how long the ensemble keeps the session
    /// of a client it no longer hears.
    pub fn session_timeout(mut self, timeout: Duration) -> ZooKeeperOptions {
        self.session_timeout = timeout;
        self
    }

    /// The largest value to accept (default 1 MiB minus room for the request; raise it only
    /// with the servers' `jute.maxbuffer`).
    pub fn max_value_bytes(mut self, bytes: usize) -> ZooKeeperOptions {
        self.max_value_bytes = bytes;
        self
    }

    /// Whether reads first ask their server to catch up with the leader (`sync`); by default
    /// only when several servers are listed.
    pub fn sync_reads(mut self, sync: bool) -> ZooKeeperOptions {
        self.sync_reads = Some(sync);
        self
    }

    /// Authenticates with digest credentials; nodes are then created readable and writable by
    /// this identity only.
    pub fn digest(mut self, user: impl Into<String>, password: Secret) -> ZooKeeperOptions {
        self.auth = Some((user.into(), password));
        self
    }

    /// TLS ([`Tls::new`] trusts the system roots).
    pub fn tls(mut self, tls: Tls) -> ZooKeeperOptions {
        self.tls = Some(tls);
        self
    }

    /// How long an emptied key keeps the node that guards its writes (its epoch node, or in
    /// the native layout its emptied node) before this handle reclaims it: a write in flight
    /// that read the key earlier must have landed or failed by then. Default: 60 s, or twice
    /// the session timeout plus the call timeout if that is longer. It must exceed the
    /// longest session timeout plus call timeout of any client writing these keys (a
    /// session's writes cannot land after it expires); [`ZooKeeperOptions::connect`] refuses
    /// less than this handle's own. Give every client of a base path the same value: a handle
    /// also sends a CAS on the version of its own last write without reading first for as
    /// long as its own `reclaim_after` allows.
    pub fn reclaim_after(mut self, after: Duration) -> ZooKeeperOptions {
        self.reclaim_after = Some(after);
        self
    }

    /// Values as the data of `<base>/<key>` nodes, where `zkCli` reads and writes them
    /// (`layout=native`; no TTL, transactions or leases).
    pub fn native_layout(mut self) -> ZooKeeperOptions {
        self.native = true;
        self
    }

    /// Opens a session, creates the base and reads it (a wrong identity fails here, as
    /// [`ZooKeeperStore::open`] does).
    pub async fn connect(self) -> Result<ZooKeeperStore> {
        if self.servers.is_empty() {
            return Err(Error::invalid_argument(
                "ZooKeeperOptions needs at least one server (host:2181)",
            ));
        }
        let base = &base_path(&self.base).map_err(Error::invalid_argument)?;
        let cluster = self
            .servers
            .iter()
            .map(|spec| HostPort::parse(spec).map(|h| h.address(2181)))
            .collect::<Result<Vec<_>>>()?
            .join(",");
        let timeout = self.timeout;
        let held_for = self.session_timeout + timeout;
        let reclaim_after = match self.reclaim_after {
            Some(after) if after <= held_for => {
                return Err(Error::invalid_argument(format!(
                    "reclaim_after ({after:?}) must exceed the session timeout plus the call \
                     timeout ({held_for:?}): a write in flight could otherwise land on a key \
                     created again"
                )));
            }
            Some(after) => after,
            None => (held_for * 2).max(crate::reclaim::DEFAULT_AFTER),
        };
        // One server cannot be behind another; with several, a read syncs first.
        let sync_reads = self.sync_reads.unwrap_or(self.servers.len() > 1);
        let shown = self.to_string();
        let connection = Connection {
            cluster,
            auth: self.auth,
            tls: self.tls.map(crate::tls_options).transpose()?,
            timeout,
        };
        let client = connection.connect(self.session_timeout).await?;
        let layout = Layout::new(base, self.native);
        // Create the base, then read it: a wrong identity fails here, not at the first call.
        // It is a container, like every directory: ZooKeeper removes it once the store is
        // empty again, and the next write recreates it.
        let options = zk::CreateMode::Container.with_acls(connection.acls());
        timed("open", timeout, client.mkdir(base, &options)).await?;
        timed("open", timeout, client.get_children(base)).await?;
        let mut capabilities = Capabilities::full("zookeeper", self.max_value_bytes);
        // One `multi` up to 2,000 nodes, batches beyond.
        capabilities.atomic_delete_tree = false;
        // A list walks the tree, one level per round trip.
        capabilities.snapshot_lists = false;
        capabilities.watch_history = false;
        capabilities.watch_coalesces = true;
        capabilities.max_txn_ops = MAX_TXN_OPS;
        // A lease is a session; taking it up elsewhere needs the session's password, which
        // a lease ID would then carry in the open.
        capabilities.attach_leases = false;
        capabilities.ttl = Some(TtlSupport {
            min: Duration::from_millis(1),
            granularity: Duration::from_millis(1),
        });
        if self.native {
            // ZooKeeper hides a TTL node's TTL from clients: readers could not hide the key at
            // its TTL.
            capabilities.ttl = None;
            // A node's data version restarts with the node: not yet.
            capabilities.max_txn_ops = 0;
            // Not yet: a key's own node cannot turn ephemeral.
            capabilities.leases = false;
            capabilities.attach_leases = false;
        }
        let store = ZooKeeperStore {
            inner: Arc::new(Inner {
                connection,
                session_timeout: self.session_timeout,
                client: Mutex::new(client),
                layout,
                capabilities,
                closed: HandleState::default(),
                timeout,
                sync_reads,
                held: Holdings::default(),
                leases: Holdings::default(),
                reclaimer: Arc::new(crate::reclaim::Reclaimer::new(reclaim_after)),
                // A remembered write must land before its key's guard could be reclaimed:
                // the write took up to a timeout, the next one up to a session plus a timeout.
                known: crate::value::Known::new(
                    reclaim_after.saturating_sub(self.session_timeout + timeout * 2),
                ),
                shown,
            }),
        };
        crate::reclaim::spawn(&store.inner);
        Ok(store)
    }
}

/// The base node of `given` (`/a/b`, `a/b`), or why it cannot be one.
fn base_path(given: &str) -> std::result::Result<String, String> {
    let root = kv_core::Prefix::parse(given.trim_start_matches('/')).map_err(|e| e.to_string())?;
    match root.as_str() {
        "" => Err("the base path must name a node below / (default /kv)".to_owned()),
        "zookeeper" => Err(ZOOKEEPER_OWN.to_owned()),
        root if root.starts_with("zookeeper/") => Err(ZOOKEEPER_OWN.to_owned()),
        root => Ok(format!("/{root}")),
    }
}

const ZOOKEEPER_OWN: &str = "the base path must not be inside /zookeeper, ZooKeeper's own tree";

/// The options as a URL, without the password: `zookeepers://user:***@host:2181/base`.
impl fmt::Display for ZooKeeperOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() {
            "zookeepers"
        } else {
            "zookeeper"
        };
        write!(f, "{scheme}://")?;
        if let Some((user, _)) = &self.auth {
            write!(f, "{user}:***@")?;
        }
        write!(f, "{}{}", HostPort::join(&self.servers, 2181), self.base)?;
        if self.native {
            f.write_str("?layout=native")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_and_the_builder_say_the_same_without_secrets() -> Result<()> {
        let parsed = ZooKeeperOptions::from_url(&"zookeeper://u:pw@h1,h2/svc/kv".parse()?)?;
        let built = ZooKeeperOptions::new(["h1:2181", "h2:2181"])
            .base("/svc/kv")
            .digest("u", Secret::new("pw"));
        assert_eq!(
            parsed.to_string(),
            "zookeeper://u:***@h1:2181,h2:2181/svc/kv"
        );
        assert_eq!(built.to_string(), parsed.to_string());
        for shown in [format!("{parsed:?}"), format!("{built:?}")] {
            assert!(!shown.contains("pw"), "{shown}");
        }
        Ok(())
    }
}
