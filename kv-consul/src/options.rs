//! Typed configuration: what a `consul://` URL says, built in code ([`ConsulOptions`]).

use std::fmt;
use std::time::Duration;

use kv_core::{Error, HostPort, Result, Secret, StoreUrl, Tls};

use crate::api::Api;
use crate::{ConsulStore, DEFAULT_TIMEOUT, MAX_VALUE_BYTES};

/// How to reach Consul: agents, root, ACL token, timeout, TLS (or an HTTP client of your
/// own). Built in code or parsed from a `consul://` URL; [`ConsulOptions::connect`] opens the
/// store.
///
/// ```no_run
/// # async fn demo() -> kv_core::Result<()> {
/// use kv_consul::ConsulOptions;
/// let store = ConsulOptions::new(["127.0.0.1:8500"])
///     .root("app")
///     .token(kv_core::Secret::from_file("/run/secrets/consul-token")?)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConsulOptions {
    agents: Vec<String>,
    root: String,
    token: Option<Secret>,
    timeout: Duration,
    max_value_bytes: usize,
    session_ttl_min: Option<Duration>,
    tls: Option<Tls>,
    http: Option<reqwest::Client>,
}

impl ConsulOptions {
    /// The agents as `host[:port]` (port 8500 if none; calls go to the first that works), no
    /// root, no token, default timeout, plain HTTP.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(agents: I) -> ConsulOptions {
        ConsulOptions {
            agents: agents.into_iter().map(Into::into).collect(),
            root: String::new(),
            token: None,
            timeout: DEFAULT_TIMEOUT,
            max_value_bytes: MAX_VALUE_BYTES,
            session_ttl_min: None,
            tls: None,
            http: None,
        }
    }

    /// The options a `consul://` or `consuls://` URL gives (see the crate docs).
    pub fn from_url(url: &StoreUrl) -> Result<ConsulOptions> {
        if url.scheme != "consul" && url.scheme != "consuls" {
            return Err(Error::invalid_url(format!(
                "kv-consul opens consul:// and consuls:// URLs, not {}://",
                url.scheme
            )));
        }
        let mut known = vec!["token", "timeout", "max_value_bytes", "session_ttl_min"];
        known.extend(StoreUrl::TLS_OPTIONS);
        url.check_options(&known)?;
        if url.hosts.is_empty() {
            return Err(Error::invalid_url(
                "consul:// takes one or more agent addresses: consul://host:8500[,host:8500...][/root]",
            ));
        }
        Ok(ConsulOptions {
            agents: url.hosts.iter().map(|h| h.address(8500)).collect(),
            root: url.root()?.as_str().to_owned(),
            token: url.option("token").map(Secret::new),
            timeout: url.duration_option("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
            max_value_bytes: url
                .parse_option("max_value_bytes")?
                .unwrap_or(MAX_VALUE_BYTES),
            session_ttl_min: url.duration_option("session_ttl_min")?,
            tls: url.tls("consuls")?,
            http: None,
        })
    }

    /// Keys live under this prefix (`""`: no root; Consul key = kv key).
    pub fn root(mut self, root: impl Into<String>) -> ConsulOptions {
        self.root = root.into();
        self
    }

    /// The ACL token, sent as `X-Consul-Token`.
    pub fn token(mut self, token: Secret) -> ConsulOptions {
        self.token = Some(token);
        self
    }

    /// The longest any call may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> ConsulOptions {
        self.timeout = timeout;
        self
    }

    /// The largest value to accept (default 512 KiB, Consul's own limit; raise it only with
    /// the servers' `kv_max_value_size`).
    pub fn max_value_bytes(mut self, bytes: usize) -> ConsulOptions {
        self.max_value_bytes = bytes;
        self
    }

    /// The servers' shortest session TTL (`session_ttl_min`), instead of asking the agent.
    pub fn session_ttl_min(mut self, min: Duration) -> ConsulOptions {
        self.session_ttl_min = Some(min);
        self
    }

    /// HTTPS ([`Tls::new`] trusts the system roots).
    pub fn tls(mut self, tls: Tls) -> ConsulOptions {
        self.tls = Some(tls);
        self
    }

    /// Sends every request through this client (your proxies, TLS, connection pool) instead
    /// of one built from these options; the agents' scheme is then `https` only with
    /// [`ConsulOptions::tls`] set, which is otherwise unused.
    pub fn http_client(mut self, http: reqwest::Client) -> ConsulOptions {
        self.http = Some(http);
        self
    }

    /// Connects and checks that the agent answers and accepts the token (as
    /// [`ConsulStore::open`] does).
    pub async fn connect(self) -> Result<ConsulStore> {
        if self.agents.is_empty() {
            return Err(Error::invalid_argument(
                "ConsulOptions needs at least one agent (host:8500)",
            ));
        }
        let hosts = self
            .agents
            .iter()
            .map(|spec| HostPort::parse(spec))
            .collect::<Result<Vec<_>>>()?;
        let root = kv_core::Prefix::parse(&self.root)?;
        let http = match &self.http {
            Some(http) => http.clone(),
            None => reqwest::Client::builder()
                .use_preconfigured_tls(crate::tls_config(self.tls.as_ref())?)
                .connect_timeout(self.timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| Error::Backend(Box::new(e)))?,
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let api = Api::new(
            http,
            hosts
                .iter()
                .map(|host| format!("{scheme}://{}", host.address(8500)))
                .collect(),
            self.token.as_ref().map(Secret::expose),
            self.timeout,
        )?;
        let shown = self.to_string();
        ConsulStore::over(
            api,
            &root,
            self.max_value_bytes,
            self.session_ttl_min,
            shown,
        )
        .await
    }
}

/// The options as a URL, without the token: `consuls://host:8500/root?token=***`.
impl fmt::Display for ConsulOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() {
            "consuls"
        } else {
            "consul"
        };
        write!(f, "{scheme}://{}", HostPort::join(&self.agents, 8500))?;
        if !self.root.is_empty() {
            write!(f, "/{}", self.root)?;
        }
        if self.token.is_some() {
            f.write_str("?token=***")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_and_the_builder_say_the_same_without_secrets() -> Result<()> {
        let parsed = ConsulOptions::from_url(&"consul://h1,h2:8501/svc?token=pw".parse()?)?;
        let built = ConsulOptions::new(["h1", "h2:8501"])
            .root("svc")
            .token(Secret::new("pw"));
        assert_eq!(parsed.to_string(), "consul://h1:8500,h2:8501/svc?token=***");
        assert_eq!(built.to_string(), parsed.to_string());
        for shown in [format!("{parsed:?}"), format!("{built:?}")] {
            assert!(!shown.contains("pw"), "{shown}");
        }
        Ok(())
    }
}
