//! The container launcher (feature `testcontainers`): the same four servers as the process
//! launchers, from images, with the same settings and the same readiness checks, so that the
//! same cases pass in both modes.
//!
//! Select it with `KV_TEST_PROVISION=containers` (every kind) or `KV_TEST_<KIND>_PROVISION=
//! containers` (one kind). Images default to the official ones in [`IMAGES`]; override one with
//! `KV_TEST_<KIND>_IMAGE=name:tag` (e.g. a locally built image). Container ports are published
//! on 127.0.0.1 only, and each container is removed (`docker rm -f`) when the test process
//! exits, however it exits.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerRequest, GenericImage, ImageExt};

use crate::servers::{Launcher, Readiness, Server};

/// The image of each kind: `(kind, name, tag)`. The one place image names and tags live.
pub const IMAGES: &[(&str, &str, &str)] = &[
    ("etcd", "quay.io/coreos/etcd", "v3.5.17"),
    ("redis", "redis", "7.2"),
    ("consul", "hashicorp/consul", "1.15"),
    ("zookeeper", "zookeeper", "3.9"),
];

/// What to run for one server kind: everything but the host side of the ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// `etcd`, `redis`, `consul` or `zookeeper`.
    pub kind: &'static str,
    /// Image name.
    pub image: String,
    /// Image tag.
    pub tag: String,
    /// The port clients use, inside the container.
    pub port: u16,
    /// The container's command (arguments to the image's entrypoint).
    pub cmd: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// A line the server logs when it has started (then the readiness check runs).
    pub started: &'static str,
    /// The store URL scheme.
    pub scheme: &'static str,
    /// When it serves: the process launcher's check.
    pub ready: Readiness,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl ContainerSpec {
    /// The spec of a kind, with its image taken from `KV_TEST_<KIND>_IMAGE` if set.
    pub fn of(kind: &str) -> Option<ContainerSpec> {
        let override_image = std::env::var(format!("KV_TEST_{}_IMAGE", kind.to_ascii_uppercase()))
            .ok()
            .filter(|s| !s.is_empty());
        Self::with_image(kind, override_image.as_deref())
    }

    /// The spec of a kind with `image` (`name:tag`) instead of the default one.
    pub fn with_image(kind: &str, image: Option<&str>) -> Option<ContainerSpec> {
        let &(kind, name, tag) = IMAGES.iter().find(|(k, _, _)| *k == kind)?;
        let (image, tag) = match image.map(|i| i.rsplit_once(':').unwrap_or((i, "latest"))) {
            Some((name, tag)) => (name.to_owned(), tag.to_owned()),
            None => (name.to_owned(), tag.to_owned()),
        };
        let spec = |port, cmd: Vec<String>, env: Vec<(String, String)>, started, scheme, ready| {
            ContainerSpec {
                kind,
                image: image.clone(),
                tag: tag.clone(),
                port,
                cmd,
                env,
                started,
                scheme,
                ready,
            }
        };
        Some(match kind {
            "etcd" => spec(
                2379,
                strings(&[
                    "etcd",
                    "--data-dir",
                    "/tmp/etcd",
                    "--listen-client-urls",
                    "http://0.0.0.0:2379",
                    "--advertise-client-urls",
                    "http://127.0.0.1:2379",
                ]),
                Vec::new(),
                "ready to serve client requests",
                "etcd",
                crate::servers::ETCD_READY,
            ),
            "redis" => spec(
                6379,
                // Clients reach the container through Docker's port proxy, not loopback.
                strings(&[
                    "redis-server",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "no",
                ]),
                Vec::new(),
                "Ready to accept connections",
                "redis",
                crate::servers::REDIS_READY,
            ),
            "consul" => spec(
                8500,
                strings(&[
                    "agent",
                    "-dev",
                    "-client",
                    "0.0.0.0",
                    "-hcl",
                    r#"session_ttl_min = "1s""#,
                ]),
                Vec::new(),
                "Synced node info",
                "consul",
                crate::servers::CONSUL_READY,
            ),
            "zookeeper" => spec(
                2181,
                Vec::new(),
                vec![
                    // The official image appends ZOO_CFG_EXTRA to zoo.cfg.
                    (
                        "ZOO_CFG_EXTRA".into(),
                        "extendedTypesEnabled=true minSessionTimeout=400 maxSessionTimeout=60000"
                            .into(),
                    ),
                    ("ZOO_TICK_TIME".into(), "200".into()),
                    ("ZOO_4LW_COMMANDS_WHITELIST".into(), "srvr,ruok".into()),
                    ("ZOO_ADMINSERVER_ENABLED".into(), "false".into()),
                    (
                        "JVMFLAGS".into(),
                        "-Dznode.container.checkIntervalMs=500".into(),
                    ),
                ],
                "binding to port",
                "zookeeper",
                crate::servers::ZOOKEEPER_READY,
            ),
            _ => return None,
        })
    }

    /// The testcontainers request: the image, its port published on 127.0.0.1:`host_port`,
    /// the command, the environment and the log line to wait for.
    pub fn request(&self, host_port: u16) -> ContainerRequest<GenericImage> {
        let image = GenericImage::new(self.image.clone(), self.tag.clone())
            .with_exposed_port(ContainerPort::Tcp(self.port))
            .with_wait_for(WaitFor::message_on_either_std(self.started));
        let mut request = image
            .with_mapped_port(host_port, ContainerPort::Tcp(self.port))
            .with_startup_timeout(Duration::from_secs(120))
            .with_label("kv-test", self.kind)
            .with_host_config_modifier(|config| {
                // Publish on the loopback interface only.
                if let Some(bindings) = config.port_bindings.as_mut() {
                    for binding in bindings.values_mut().flatten().flatten() {
                        binding.host_ip = Some("127.0.0.1".into());
                    }
                }
            });
        if !self.cmd.is_empty() {
            request = request.with_cmd(self.cmd.clone());
        }
        for (name, value) in &self.env {
            request = request.with_env_var(name.clone(), value.clone());
        }
        request
    }
}

/// Starts a kind's container and waits until it is ready.
pub struct ContainerLauncher(pub ContainerSpec);

impl Launcher for ContainerLauncher {
    fn kind(&self) -> &'static str {
        self.0.kind
    }

    fn start(&self) -> Result<Server, String> {
        let spec = self.0.clone();
        let port = crate::servers::free_port()?;
        // testcontainers is async; start on a thread of its own so that this works from
        // inside a test's runtime as well as outside one.
        let id = std::thread::spawn(move || -> Result<String, String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let container = spec.request(port).start().await.map_err(|e| {
                    format!(
                        "cannot start {}:{} (is Docker running, and the image available?): {e}",
                        spec.image, spec.tag
                    )
                })?;
                let id = container.id().to_owned();
                // The container outlives this handle: `tie` removes it when tests end.
                std::mem::forget(container);
                Ok(id)
            })
        })
        .join()
        .map_err(|_| "the container start panicked".to_string())??;
        let lifeline = tie(&id)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.0.ready.on(port) {
            if Instant::now() > deadline {
                return Err(format!("{} container {id} never became ready", self.0.kind));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Server::launched(
            format!("{}://127.0.0.1:{port}", self.0.scheme),
            lifeline,
        ))
    }
}

/// A shell that removes container `id` when our end of its stdin closes (at exit).
fn tie(id: &str) -> Result<std::process::ChildStdin, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"read _ignored; docker rm -f -v "$1" >/dev/null 2>&1"#)
        .arg("kv-test-container")
        .arg(id)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run sh to tie container {id}: {e}"))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| "the container wrapper has no stdin".to_string())?;
    stdin.flush().map_err(|e| e.to_string())?;
    Ok(stdin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_spec_with_the_process_launchers_settings() {
        for (kind, _, _) in IMAGES {
            let spec = ContainerSpec::with_image(kind, None).unwrap();
            let request = spec.request(40000);
            assert_eq!(request.expose_ports(), &[ContainerPort::Tcp(spec.port)]);
            let mapped = request.ports().unwrap();
            assert_eq!(mapped.len(), 1);
            assert_eq!(mapped[0].host_port(), 40000);
            assert_eq!(
                request.ready_conditions().len(),
                1,
                "{kind}: one wait condition"
            );
            assert!(
                request.host_config_modifier().is_some(),
                "loopback-only publishing"
            );
            assert_eq!(request.cmd().count(), spec.cmd.len());
            assert_eq!(request.env_vars().count(), spec.env.len());
        }
        let consul = ContainerSpec::with_image("consul", None).unwrap();
        assert!(consul.cmd.iter().any(|a| a.contains("session_ttl_min")));
        let zookeeper = ContainerSpec::with_image("zookeeper", None).unwrap();
        let env: std::collections::HashMap<_, _> = zookeeper.env.iter().cloned().collect();
        assert!(env["ZOO_CFG_EXTRA"].contains("extendedTypesEnabled=true"));
        assert!(env["JVMFLAGS"].contains("checkIntervalMs=500"));
        assert!(ContainerSpec::with_image("ftp", None).is_none());
    }

    #[test]
    fn images_live_in_one_place_and_can_be_overridden() {
        let spec = ContainerSpec::with_image("redis", None).unwrap();
        assert_eq!(spec.request(1).descriptor(), "redis:7.2");
        let local = ContainerSpec::with_image("redis", Some("kv-local/redis:bookworm")).unwrap();
        assert_eq!(local.request(1).descriptor(), "kv-local/redis:bookworm");
        let untagged = ContainerSpec::with_image("etcd", Some("kv-local/etcd")).unwrap();
        assert_eq!(
            (untagged.image.as_str(), untagged.tag.as_str()),
            ("kv-local/etcd", "latest")
        );
        assert_eq!(
            ContainerSpec::with_image("etcd", None)
                .unwrap()
                .request(1)
                .descriptor(),
            "quay.io/coreos/etcd:v3.5.17"
        );
    }
}
