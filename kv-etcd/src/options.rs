//! Typed configuration: what an `etcd://` URL says, built in code ([`EtcdOptions`]).

use std::fmt;
use std::time::Duration;

use kv_core::{Error, HostPort, Result, Secret, StoreUrl, Tls};

use crate::client::ConnectOptions;
use crate::{DEFAULT_TIMEOUT, EtcdStore, Members};

/// How to reach an etcd cluster: endpoints, root, timeouts, credentials and TLS. Built in code
/// or parsed from an `etcd://` URL; [`EtcdOptions::connect`] opens the store.
///
/// ```no_run
/// # async fn demo(ca: Vec<u8>) -> kv_core::Result<()> {
/// use kv_etcd::EtcdOptions;
/// let store = EtcdOptions::new(["10.0.0.1:2379", "10.0.0.2:2379"])
///     .root("app")
///     .timeout(std::time::Duration::from_secs(2))
///     .credentials("app", kv_core::Secret::from_env("ETCD_PASSWORD")?)
///     .tls(kv_core::Tls::new().ca_pem(ca))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    endpoints: Vec<String>,
    root: String,
    timeout: Duration,
    connect_timeout: Duration,
    credentials: Option<(String, Secret)>,
    tls: Option<Tls>,
    slash: bool,
}

impl EtcdOptions {
    /// The cluster's members as `host[:port]` (port 2379 if none), no root, default timeouts,
    /// plain connections.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(endpoints: I) -> EtcdOptions {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            root: String::new(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_TIMEOUT,
            credentials: None,
            tls: None,
            slash: false,
        }
    }

    /// The options an `etcd://` or `etcds://` URL gives (see the crate docs).
    pub fn from_url(url: &StoreUrl) -> Result<EtcdOptions> {
        if url.scheme != "etcd" && url.scheme != "etcds" {
            return Err(Error::invalid_url(format!(
                "kv-etcd opens etcd:// and etcds:// URLs, not {}://",
                url.scheme
            )));
        }
        let mut known = vec!["timeout", "connect_timeout", "layout"];
        known.extend(StoreUrl::TLS_OPTIONS);
        url.check_options(&known)?;
        if url.hosts.is_empty() {
            return Err(Error::invalid_url(
                "etcd:// needs at least one host: etcd://host:2379[/root]",
            ));
        }
        Ok(EtcdOptions {
            endpoints: url.hosts.iter().map(|h| h.address(2379)).collect(),
            root: url.root()?.as_str().to_owned(),
            timeout: url.duration_option("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
            connect_timeout: url
                .duration_option("connect_timeout")?
                .unwrap_or(DEFAULT_TIMEOUT),
            credentials: url.username.clone().map(|user| {
                let password = url.password.clone().unwrap_or_else(|| Secret::new(""));
                (user, password)
            }),
            tls: url.tls("etcds")?,
            slash: url.choice_option("layout", &["slash"])?.is_some(),
        })
    }

    /// Keys live under this prefix (`""`: the whole keyspace, the kv key is the etcd key).
    pub fn root(mut self, root: impl Into<String>) -> EtcdOptions {
        self.root = root.into();
        self
    }

    /// The longest any call may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> EtcdOptions {
        self.timeout = timeout;
        self
    }

    /// The longest connecting to a member may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> EtcdOptions {
        self.connect_timeout = timeout;
        self
    }

    /// Authenticates as `user` (etcd's user/password auth).
    pub fn credentials(mut self, user: impl Into<String>, password: Secret) -> EtcdOptions {
        self.credentials = Some((user.into(), password));
        self
    }

    /// Connects over TLS ([`Tls::new`] trusts the system roots).
    pub fn tls(mut self, tls: Tls) -> EtcdOptions {
        self.tls = Some(tls);
        self
    }

    /// Connects and checks that a member answers (as [`EtcdStore::open`] does).
    pub async fn connect(self) -> Result<EtcdStore> {
        if self.endpoints.is_empty() {
            return Err(Error::invalid_argument(
                "EtcdOptions needs at least one endpoint (host:2379)",
            ));
        }
        let hosts = self
            .endpoints
            .iter()
            .map(|spec| HostPort::parse(spec))
            .collect::<Result<Vec<_>>>()?;
        let root = kv_core::Prefix::parse(&self.root)?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = hosts
            .iter()
            .map(|h| format!("{scheme}://{}", h.address(2379)))
            .collect();
        let mut options = ConnectOptions {
            connect_timeout: Some(self.connect_timeout),
            timeout: Some(self.timeout),
            keep_alive: Some((Duration::from_secs(5), self.timeout)),
            credentials: self.credentials.clone(),
            tls: None,
        };
        if let Some(given) = &self.tls {
            let mut tls = tonic::transport::ClientTlsConfig::new();
            tls = match &given.ca {
                Some(ca) => tls.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                // As documented: no CA given, the system's roots (read by rustls-native-certs,
                // which honours SSL_CERT_FILE / SSL_CERT_DIR). Without this no root was trusted
                // and every `etcds://` URL without `ca=` failed to connect.
                None => tls.with_native_roots(),
            };
            if let Some((cert, key)) = &given.identity {
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key.expose()));
            }
            options.tls = Some(tls);
        }
        let shown = self.to_string();
        let members =
            Members::connect(&endpoints, &options, self.connect_timeout + self.timeout).await?;
        EtcdStore::over(
            members,
            crate::layout::Layout::new(root.as_str(), self.slash),
            self.timeout,
            shown,
        )
        .await
    }
}

/// The options as a URL, without secrets: `etcds://user:***@host:2379,host:2379/root`.
impl fmt::Display for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        write!(f, "{scheme}://")?;
        if let Some((user, _)) = &self.credentials {
            write!(f, "{user}:***@")?;
        }
        write!(f, "{}", HostPort::join(&self.endpoints, 2379))?;
        if !self.root.is_empty() {
            write!(f, "/{}", self.root)?;
        }
        if self.slash {
            f.write_str("?layout=slash")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_and_the_builder_say_the_same_without_secrets() -> Result<()> {
        let parsed = EtcdOptions::from_url(&"etcds://app:pw@h1,h2:2380/svc?timeout=2s".parse()?)?;
        let built = EtcdOptions::new(["h1:2379", "h2:2380"])
            .root("svc")
            .timeout(Duration::from_secs(2))
            .credentials("app", Secret::new("pw"))
            .tls(Tls::new());
        assert_eq!(parsed.to_string(), "etcds://app:***@h1:2379,h2:2380/svc");
        assert_eq!(built.to_string(), parsed.to_string());
        for shown in [format!("{parsed:?}"), format!("{built:?}")] {
            assert!(!shown.contains("pw"), "{shown}");
        }
        Ok(())
    }
}
