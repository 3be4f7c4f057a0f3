//! Store URLs: `scheme://[user[:password]@]host[:port][,host[:port]...][/root-prefix][?options]`.
//!
//! Secrets need not be in the URL (where `ps` and shell history show them): `password_file=PATH`
//! or `password_env=VAR` give the password, `token_file=PATH` / `token_env=VAR` (likewise for
//! every secret option) give that option; they are read when the URL is parsed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::error::{Error, Result};
use crate::key::Prefix;

/// Option names whose values are secrets, redacted in `Debug` and `Display`.
const SECRET_OPTIONS: &[&str] = &["token", "password", "secret", "auth"];

/// A password or token: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret in the file at `path` (a trailing newline dropped), read now: keeps it out
    /// of the URL, the command line and `ps`.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Secret> {
        let path = path.as_ref();
        std::fs::read_to_string(path)
            .map(|text| Secret::trimmed(&text))
            .map_err(|e| {
                Error::invalid_argument(format!("cannot read the secret file {path:?}: {e}"))
            })
    }

    /// The secret in the environment variable `name` (a trailing newline dropped), read now.
    pub fn from_env(name: &str) -> Result<Secret> {
        std::env::var(name)
            .map(|text| Secret::trimmed(&text))
            .map_err(|_| {
                Error::invalid_argument(format!(
                    "the environment variable {name:?} named for a secret is not set"
                ))
            })
    }

    fn trimmed(text: &str) -> Secret {
        let text = text.strip_suffix('\n').unwrap_or(text);
        Secret(text.strip_suffix('\r').unwrap_or(text).to_owned())
    }

    /// The secret itself, for sending to the server. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// One `host[:port]` of a store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses `host[:port]` (`[v6]:port` for IPv6), as a URL's host list gives it.
    pub fn parse(spec: &str) -> Result<HostPort> {
        parse_host(spec)
    }

    /// A list of `host[:port]` specs as `host:port,host:port` (default port filled in; a spec
    /// that does not parse shown as given), for showing configured addresses.
    pub fn join(specs: &[String], default_port: u16) -> String {
        specs
            .iter()
            .map(|spec| match HostPort::parse(spec) {
                Ok(host) => host.address(default_port),
                Err(_) => spec.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port`, with the default port if none was given (IPv6 hosts bracketed).
    pub fn address(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

/// A parsed store URL, the typed configuration backends read.
///
/// ```
/// use kv_core::StoreUrl;
/// let url: StoreUrl = "etcd://user:pw@10.0.0.1:2379,10.0.0.2/app?timeout=5s".parse().unwrap();
/// assert_eq!(url.scheme, "etcd");
/// assert_eq!(url.hosts.len(), 2);
/// assert_eq!(url.root().unwrap().as_str(), "app");
/// assert_eq!(url.duration_option("timeout").unwrap(), Some(std::time::Duration::from_secs(5)));
/// assert!(!format!("{url:?}").contains("pw"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The scheme, lower-cased (`memory`, `etcd`, `rediss`, ...).
    pub scheme: String,
    /// The user name, percent-decoded.
    pub username: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<Secret>,
    /// Hosts in the order given; empty when the URL has none (`memory://`).
    pub hosts: Vec<HostPort>,
    /// The path after the hosts, percent-decoded, without the leading `/`.
    pub path: String,
    /// Query options in the order given, percent-decoded.
    pub options: Vec<(String, String)>,
}

impl StoreUrl {
    /// Parses a store URL; bad input is [`Error::InvalidUrl`] with the reason (never the
    /// password).
    pub fn parse(input: &str) -> Result<StoreUrl> {
        let (scheme, rest) = input.split_once("://").ok_or_else(|| {
            Error::invalid_url("expected scheme://..., e.g. memory:// or etcd://host:2379")
        })?;
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(Error::invalid_url(format!("invalid scheme {scheme:?}")));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        if before_query.contains('#') || query.is_some_and(|q| q.contains('#')) {
            return Err(Error::invalid_url("fragments (#...) are not allowed"));
        }
        let (authority, path) = match before_query.find('/') {
            Some(at) => (&before_query[..at], &before_query[at + 1..]),
            None => (before_query, ""),
        };
        let (userinfo, hostlist) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user = decode(user, "user name")?;
                let pass = pass.map(|p| decode(p, "password")).transpose()?;
                ((!user.is_empty()).then_some(user), pass)
            }
        };
        let hosts = if hostlist.is_empty() {
            Vec::new()
        } else {
            hostlist.split(',').map(parse_host).collect::<Result<_>>()?
        };
        let mut options: Vec<(String, String)> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name, "option name")?;
            if options.iter().any(|(n, _)| *n == name) {
                return Err(Error::invalid_url(format!(
                    "option {name:?} is given twice"
                )));
            }
            options.push((name, decode(value, "option value")?));
        }
        let mut url = StoreUrl {
            scheme: scheme.to_ascii_lowercase(),
            username,
            password: password.map(Secret),
            hosts,
            path: decode(path, "path")?,
            options,
        };
        url.read_secrets()?;
        Ok(url)
    }

    /// Replaces `<secret>_file=PATH` and `<secret>_env=VAR` options (`password`, `token`, ...)
    /// by the secret they name, read now (a trailing newline is dropped).
    fn read_secrets(&mut self) -> Result<()> {
        let mut index = 0;
        while index < self.options.len() {
            let (name, source) = &self.options[index];
            let found = ["_file", "_env"].iter().find_map(|suffix| {
                let secret = name.strip_suffix(suffix)?;
                SECRET_OPTIONS
                    .contains(&secret)
                    .then_some((secret, *suffix))
            });
            let Some((secret, kind)) = found else {
                index += 1;
                continue;
            };
            let value = match kind {
                "_file" => Secret::from_file(source),
                _ => Secret::from_env(source),
            }
            .map_err(|e| Error::invalid_url(format!("{name}: {e}")))?;
            let given_twice = match secret {
                "password" => self.password.is_some(),
                _ => self.option(secret).is_some(),
            };
            if given_twice {
                return Err(Error::invalid_url(format!(
                    "{secret} is given twice (in the URL and by {name})"
                )));
            }
            let secret = secret.to_owned();
            self.options.remove(index);
            if secret == "password" {
                self.password = Some(value);
            } else {
                self.options.push((secret, value.0));
            }
        }
        Ok(())
    }

    /// The path as a key prefix under which every key of this store lives.
    pub fn root(&self) -> Result<Prefix> {
        Prefix::parse(&self.path).map_err(|e| {
            Error::invalid_url(format!(
                "root prefix {:?} is not a valid key: {e}",
                self.path
            ))
        })
    }

    /// The value of an option.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// An option parsed with `FromStr`; a bad value is [`Error::InvalidUrl`].
    pub fn parse_option<T: FromStr>(&self, name: &str) -> Result<Option<T>>
    where
        T::Err: fmt::Display,
    {
        self.option(name)
            .map(|v| {
                v.parse()
                    .map_err(|e| Error::invalid_url(format!("option {name}={v:?}: {e}")))
            })
            .transpose()
    }

    /// A duration option such as `timeout=500ms` or `timeout=5s`.
    pub fn duration_option(&self, name: &str) -> Result<Option<Duration>> {
        self.option(name)
            .map(|v| {
                humantime::parse_duration(v).map_err(|e| {
                    Error::invalid_url(format!("option {name}={v:?}: {e} (try e.g. 500ms, 5s, 1m)"))
                })
            })
            .transpose()
    }

    /// A boolean option (`true`/`false`/`1`/`0`).
    pub fn bool_option(&self, name: &str) -> Result<Option<bool>> {
        self.option(name)
            .map(|v| match v {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(Error::invalid_url(format!(
                    "option {name}={v:?}: expected true or false"
                ))),
            })
            .transpose()
    }

    /// An option that takes one of `choices` (e.g. `layout=native`); another value is
    /// [`Error::InvalidUrl`] naming the choices.
    pub fn choice_option(
        &self,
        name: &str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>> {
        self.option(name)
            .map(|v| {
                choices.iter().find(|c| **c == v).copied().ok_or_else(|| {
                    Error::invalid_url(format!(
                        "option {name}={v:?}: expected one of {}",
                        choices.join(", ")
                    ))
                })
            })
            .transpose()
    }

    /// Fails on any option not in `known`, naming the known ones: typos do not pass silently.
    pub fn check_options(&self, known: &[&str]) -> Result<()> {
        match self
            .options
            .iter()
            .find(|(n, _)| !known.contains(&n.as_str()))
        {
            None => Ok(()),
            Some((name, _)) => Err(Error::invalid_url(format!(
                "unknown option {name:?} for {}:// (known: {})",
                self.scheme,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))),
        }
    }
}

/// TLS settings of a connection: the certificate authority to trust and the client identity,
/// as PEM bytes. From a URL's `ca`, `cert` and `key` options (files read at parse,
/// [`StoreUrl::tls`]) or built from bytes you hold (a secret store, an embedded certificate):
///
/// ```
/// let tls = kv_core::Tls::new()
///     .ca_pem(b"-----BEGIN CERTIFICATE-----\n...".to_vec())
///     .identity_pem(b"-----BEGIN CERTIFICATE-----\n...".to_vec(), "-----BEGIN PRIVATE KEY-----\n...");
/// assert!(!format!("{tls:?}").contains("PRIVATE"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// Certificate authority to trust instead of the system roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key, for mutual TLS.
    pub identity: Option<(Vec<u8>, Secret)>,
}

impl Tls {
    /// TLS trusting the system's roots, without a client certificate.
    pub fn new() -> Tls {
        Tls::default()
    }

    /// Trusts this certificate authority (PEM) instead of the system roots.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Tls {
        self.ca = Some(pem.into());
        self
    }

    /// Presents this client certificate and private key (both PEM), for mutual TLS.
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<String>) -> Tls {
        self.identity = Some((cert.into(), Secret::new(key)));
        self
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl StoreUrl {
    /// The option names [`StoreUrl::tls`] reads.
    pub const TLS_OPTIONS: [&'static str; 4] = ["tls", "ca", "cert", "key"];

    /// TLS settings: on for `secure_scheme` (e.g. `etcds`) or `?tls=true`, with the PEM files
    /// of `ca=PATH`, `cert=PATH` and `key=PATH`; `None` for plain connections. `cert` and `key`
    /// go together.
    pub fn tls(&self, secure_scheme: &str) -> Result<Option<Tls>> {
        let on = self.scheme == secure_scheme || self.bool_option("tls")?.unwrap_or(false);
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            self.option(name)
                .map(|path| {
                    std::fs::read(path).map_err(|e| {
                        Error::invalid_url(format!("cannot read the {name} file {path:?}: {e}"))
                    })
                })
                .transpose()
        };
        if !on {
            if ["ca", "cert", "key"]
                .iter()
                .any(|o| self.option(o).is_some())
            {
                return Err(Error::invalid_url(format!(
                    "ca, cert and key need TLS: use {secure_scheme}:// or tls=true"
                )));
            }
            return Ok(None);
        }
        let identity = match (read("cert")?, read("key")?) {
            (Some(cert), Some(key)) => Some((
                cert,
                Secret::new(String::from_utf8_lossy(&key).into_owned()),
            )),
            (None, None) => None,
            _ => return Err(Error::invalid_url("cert and key must be given together")),
        };
        Ok(Some(Tls {
            ca: read("ca")?,
            identity,
        }))
    }
}

impl FromStr for StoreUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<StoreUrl> {
        StoreUrl::parse(s)
    }
}

/// Shows the URL with the password and secret options replaced by `***`.
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

impl StoreUrl {
    /// The URL as a string that parses back to the same `StoreUrl`, secrets included: for
    /// opening derived stores. Never log it; `Display` hides the secrets.
    pub fn to_url_string(&self) -> String {
        struct Revealed<'a>(&'a StoreUrl);
        impl fmt::Display for Revealed<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write(f, true)
            }
        }
        Revealed(self).to_string()
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, reveal: bool) -> fmt::Result {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let encode = |part: &str| utf8_percent_encode(part, NON_ALPHANUMERIC).to_string();
        write!(f, "{}://", self.scheme)?;
        if let Some(user) = &self.username {
            f.write_str(&encode(user))?;
        }
        match &self.password {
            Some(password) if reveal => write!(f, ":{}", encode(password.expose()))?,
            Some(_) => f.write_str(":***")?,
            None => {}
        }
        if self.username.is_some() || self.password.is_some() {
            f.write_str("@")?;
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host.port {
                Some(_) => f.write_str(&host.address(0))?,
                None => f.write_str(&host.host)?,
            }
        }
        if !self.path.is_empty() {
            let segments: Vec<String> = self.path.split('/').map(encode).collect();
            write!(f, "/{}", segments.join("/"))?;
        }
        for (i, (name, value)) in self.options.iter().enumerate() {
            let shown = if !reveal && SECRET_OPTIONS.contains(&name.as_str()) {
                "***".to_owned()
            } else {
                encode(value)
            };
            write!(
                f,
                "{}{}={shown}",
                if i == 0 { '?' } else { '&' },
                encode(name)
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

fn decode(part: &str, what: &str) -> Result<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            Error::invalid_url(format!(
                "the {what} is not valid UTF-8 after percent-decoding"
            ))
        })
}

fn parse_host(spec: &str) -> Result<HostPort> {
    let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| Error::invalid_url(format!("unclosed '[' in host {spec:?}")))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(Error::invalid_url(format!(
                        "unexpected text after ']' in host {spec:?}"
                    )));
                }
            },
        }
    } else {
        match spec.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (spec, None),
        }
    };
    if host.is_empty() {
        return Err(Error::invalid_url(format!("empty host in {spec:?}")));
    }
    if host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@' || c == '/') {
        return Err(Error::invalid_url(format!("invalid host {host:?}")));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                Error::invalid_url(format!("invalid port {p:?} in host {spec:?} (1-65535)"))
            })
        })
        .transpose()?;
    Ok(HostPort {
        host: decode(host, "host")?,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_the_environment() {
        let path = std::env::temp_dir().join(format!("kv-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cr3t\n").unwrap();
        let file = path.display();
        let url = StoreUrl::parse(&format!("etcd://me@h:2379/app?password_file={file}")).unwrap();
        assert_eq!(url.password.as_ref().unwrap().expose(), "s3cr3t");
        assert!(url.options.is_empty(), "the _file option is consumed");
        assert!(!url.to_string().contains("s3cr3t"));
        let url = StoreUrl::parse(&format!("consul://h:8500?token_file={file}&dc=x")).unwrap();
        assert_eq!(url.option("token"), Some("s3cr3t"));
        assert!(!format!("{url:?}").contains("s3cr3t"));
        let twice = StoreUrl::parse(&format!("etcd://me:pw@h?password_file={file}"));
        assert!(matches!(twice, Err(Error::InvalidUrl { .. })));
        let unset = StoreUrl::parse("consul://h?token_env=KV_TEST_SURELY_UNSET_VARIABLE");
        let message = unset.unwrap_err().to_string();
        assert!(
            message.contains("KV_TEST_SURELY_UNSET_VARIABLE"),
            "{message}"
        );
        let missing = StoreUrl::parse("consul://h?token_file=/nonexistent/kv-token");
        assert!(matches!(missing, Err(Error::InvalidUrl { .. })));
        // `PATH` is set in every test environment: its value becomes the secret.
        let env = StoreUrl::parse("redis://h?password_env=PATH").unwrap();
        assert_eq!(
            env.password.unwrap().expose(),
            std::env::var("PATH").unwrap()
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn parses_everything() {
        let url = StoreUrl::parse("Redis://me:p%40ss@h1:6379,[::1]:7000,h3/0?root=app&timeout=2s")
            .unwrap();
        assert_eq!(url.scheme, "redis");
        assert_eq!(url.username.as_deref(), Some("me"));
        assert_eq!(url.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(
            url.hosts,
            vec![
                HostPort {
                    host: "h1".into(),
                    port: Some(6379)
                },
                HostPort {
                    host: "::1".into(),
                    port: Some(7000)
                },
                HostPort {
                    host: "h3".into(),
                    port: None
                },
            ]
        );
        assert_eq!(url.hosts[1].address(1), "[::1]:7000");
        assert_eq!(url.path, "0");
        assert_eq!(url.option("root"), Some("app"));
        assert_eq!(
            url.duration_option("timeout").unwrap(),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn no_hosts() {
        let url = StoreUrl::parse("memory://").unwrap();
        assert!(url.hosts.is_empty());
        assert!(url.root().unwrap().is_root());
        let url = StoreUrl::parse("sled:///var/lib/kv").unwrap();
        assert!(url.hosts.is_empty());
        assert_eq!(url.path, "var/lib/kv");
    }

    #[test]
    fn bad_urls_say_why() {
        for (input, needle) in [
            ("etcd", "scheme://"),
            ("://x", "scheme"),
            ("etcd://h:99999", "port"),
            ("etcd://h:0", "port"),
            ("etcd://h:abc", "port"),
            ("etcd://h1,,h2", "empty host"),
            ("etcd://[::1", "unclosed"),
            ("etcd://h?a=1&a=2", "twice"),
            ("etcd://h/a#frag", "fragment"),
            ("etcd://u:%ff@h", "password"),
        ] {
            let err = StoreUrl::parse(input).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }));
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
        let url = StoreUrl::parse("etcd://h/a//b").unwrap();
        assert!(matches!(url.root(), Err(Error::InvalidUrl { .. })));
    }

    #[test]
    fn secrets_never_shown() {
        let url = StoreUrl::parse("consul://admin:hunter2@h:8500/app?token=s3cr3t&dc=x").unwrap();
        for shown in [
            format!("{url}"),
            format!("{url:?}"),
            format!("{:?}", url.password),
        ] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("s3cr3t"),
                "{shown}"
            );
        }
        assert_eq!(
            url.to_string(),
            "consul://admin:***@h:8500/app?token=***&dc=x"
        );
        let err = StoreUrl::parse("etcd://u:hunter2@h:bad").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn round_trips_with_secrets_only_on_request() {
        let input = "redis://me:p%40ss%2Fw@h:6379/0?root=a%2Fb&token=t%26k";
        let url = StoreUrl::parse(input).unwrap();
        assert_eq!(StoreUrl::parse(&url.to_url_string()).unwrap(), url);
        assert!(!url.to_string().contains("p%40ss") && !url.to_string().contains("t%26k"));
    }

    #[test]
    fn options_are_checked() {
        let url = StoreUrl::parse("memory://x?histroy=5").unwrap();
        let err = url.check_options(&["history"]).unwrap_err();
        assert!(err.to_string().contains("histroy") && err.to_string().contains("history"));
        let url = StoreUrl::parse("memory://x?tls=maybe&n=z").unwrap();
        assert!(url.bool_option("tls").is_err());
        assert!(url.parse_option::<u32>("n").is_err());
        assert!(url.duration_option("nope").unwrap().is_none());
    }
}
