//! Consul: the `-dev` agent launcher and the datacenter of servers and a client agent (on
//! loopback, or in network namespaces).

use super::*;

/// Consul serves once a leader is known (`/v1/status/leader`).
pub(crate) const READY: Readiness = Readiness {
    kind: "consul",
    check: |address| {
        probe_at(address, b"GET /v1/status/leader HTTP/1.0\r\n\r\n")
            .and_then(|r| r.split("\r\n\r\n").nth(1).map(|body| body.trim().len() > 2))
            .unwrap_or(false)
    },
};

/// Consul 1.8 in `-dev` mode (the binary `scripts/fetch-consul` provides), every port free and on
/// 127.0.0.1, with a 1 s minimum session TTL so TTL tests do not take 10 s.
pub struct ConsulProcess;

impl Launcher for ConsulProcess {
    fn kind(&self) -> &'static str {
        "consul"
    }

    fn ready(&self, address: SocketAddr) -> bool {
        READY.at(address)
    }

    fn start(&self) -> Result<Server, String> {
        self.start_with("")
    }
}

impl ConsulProcess {
    /// Starts an agent with extra HCL configuration (e.g. an `acl { ... }` block).
    pub fn start_with(&self, extra_hcl: &str) -> Result<Server, String> {
        let binary = find_binary(
            "consul",
            "scripts/fetch-consul (Debian bullseye's consul 1.8.7)",
        )?;
        let dir = server_dir("consul")?;
        let (http, lan, wan, server) = (free_port()?, free_port()?, free_port()?, free_port()?);
        let mut args = consul_args(http, lan, wan, server);
        args.push("-dev".to_owned());
        if !extra_hcl.is_empty() {
            args.extend(["-hcl".to_owned(), extra_hcl.to_owned()]);
        }
        let lifeline = spawn_tied(&binary, &args, &dir)?;
        // Sessions (locks, TTLs) need the agent's node in the catalog, which comes a moment
        // after the leader ("Missing node registration" otherwise). With ACLs on, an anonymous
        // read of the catalog is empty, so only the leader is waited for.
        let registered = || {
            extra_hcl.contains("acl")
                || probe(http, b"GET /v1/catalog/nodes HTTP/1.0\r\n\r\n")
                    .and_then(|r| r.split("\r\n\r\n").nth(1).map(|b| b.contains("\"Node\"")))
                    .unwrap_or(false)
        };
        wait_ready("consul", &dir, Duration::from_secs(60), || {
            READY.on(http) && registered()
        })?;
        Ok(Server::controlled(
            format!("consul://127.0.0.1:{http}"),
            lifeline,
            READY,
            http,
            dir,
        ))
    }
}

/// The arguments every test agent shares: loopback only, its HTTP, Serf LAN/WAN and server RPC
/// ports, no DNS or gRPC, sessions as short as 1 s, quiet logs.
fn consul_args(http: u16, lan: u16, wan: u16, rpc: u16) -> Vec<String> {
    consul_args_on(
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::LOCALHOST,
        [http, lan, wan, rpc],
    )
}

/// [`consul_args`] with the HTTP API on `client` and the cluster traffic on `bind`.
fn consul_args_on(
    client: Ipv4Addr,
    bind: Ipv4Addr,
    [http, lan, wan, rpc]: [u16; 4],
) -> Vec<String> {
    [
        "agent",
        "-client",
        &client.to_string(),
        "-bind",
        &bind.to_string(),
        "-http-port",
        &http.to_string(),
        "-serf-lan-port",
        &lan.to_string(),
        "-serf-wan-port",
        &wan.to_string(),
        "-server-port",
        &rpc.to_string(),
        "-dns-port",
        "-1",
        "-grpc-port",
        "-1",
        "-hcl",
        r#"session_ttl_min = "1s""#,
        "-log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A Consul datacenter on loopback ports: several servers (with data directories, fast raft
/// timing: `raft_multiplier = 1`) and one client agent, as Consul is normally used; each one a
/// [`Server`] the tests can kill, restart and pause; gone when the test process exits.
pub struct ConsulCluster {
    /// The servers.
    pub servers: Vec<Server>,
    /// The client agent: `consul://127.0.0.1:PORT`, where applications point kv.
    pub agent: Server,
    /// The servers' network namespaces ([`ConsulCluster::start_in_namespaces`]), removed
    /// after the servers stop.
    network: Option<crate::netns::Network>,
}

impl ConsulCluster {
    /// Starts `size` servers and a client agent, and waits until the agent sees a leader and
    /// every node.
    pub fn start(size: usize) -> Result<ConsulCluster, String> {
        with_port_retries(|| Self::start_once(size, None))
    }

    /// [`ConsulCluster::start`] with each server in a network namespace of its own
    /// ([`crate::netns`]), so that a server can be cut off from its peers
    /// ([`ConsulCluster::links`]); the agent stays in the test's namespace, its HTTP API on
    /// loopback. Needs root and iproute2.
    pub fn start_in_namespaces(size: usize) -> Result<ConsulCluster, String> {
        with_port_retries(|| Self::start_once(size, Some(crate::netns::Network::create(size)?)))
    }

    /// Each server's link, in order (empty unless started in namespaces).
    pub fn links(&self) -> &[crate::netns::Link] {
        self.network.as_ref().map_or(&[], |n| n.members())
    }

    fn start_once(
        size: usize,
        network: Option<crate::netns::Network>,
    ) -> Result<ConsulCluster, String> {
        let binary = find_binary(
            "consul",
            "scripts/fetch-consul (Debian bullseye's consul 1.8.7)",
        )?;
        // Where each node listens: its namespace's address (the agent: loopback for its API,
        // the bridge for the cluster), or loopback for all.
        let address = |i: usize| match &network {
            Some(network) if i < size => network.members()[i].address(),
            _ => Ipv4Addr::LOCALHOST,
        };
        let bind = |i: usize| match &network {
            Some(network) if i == size => network.gateway(),
            _ => address(i),
        };
        let mut ports = Vec::with_capacity(size + 1);
        for _ in 0..=size {
            ports.push((free_port()?, free_port()?, free_port()?, free_port()?));
        }
        let joins: Vec<String> = ports[..size]
            .iter()
            .enumerate()
            .flat_map(|(i, (_, lan, _, _))| {
                ["-retry-join".to_owned(), format!("{}:{lan}", address(i))]
            })
            .collect();
        let mut started = Vec::with_capacity(size + 1);
        for (i, (http, lan, wan, rpc)) in ports.iter().enumerate() {
            let server = i < size;
            let dir = server_dir(if server {
                "consul-server"
            } else {
                "consul-agent"
            })?;
            let mut args = consul_args_on(address(i), bind(i), [*http, *lan, *wan, *rpc]);
            args.extend([
                "-node".into(),
                if server {
                    format!("s{i}")
                } else {
                    "agent".into()
                },
                "-data-dir".into(),
                dir.join("data").to_string_lossy().into_owned(),
                "-hcl".into(),
                "performance { raft_multiplier = 1 }".into(),
            ]);
            if server {
                args.extend(["-server".into(), format!("-bootstrap-expect={size}")]);
            }
            args.extend(joins.iter().cloned());
            let lifeline = match &network {
                Some(network) if server => {
                    let mut inside: Vec<String> = network.members()[i].exec().into();
                    inside.push(binary.to_string_lossy().into_owned());
                    inside.extend(args);
                    spawn_tied(Path::new("ip"), &inside, &dir)?
                }
                _ => spawn_tied(&binary, &args, &dir)?,
            };
            started.push((lifeline, SocketAddr::from((address(i), *http)), dir));
        }
        let mut members = Vec::with_capacity(size + 1);
        for (lifeline, http, dir) in started {
            let nodes = |count: usize| {
                probe_at(http, b"GET /v1/catalog/nodes?stale HTTP/1.0\r\n\r\n")
                    .and_then(|r| {
                        r.split("\r\n\r\n")
                            .nth(1)
                            .map(|b| b.matches("\"Node\"").count())
                    })
                    .is_some_and(|n| n >= count)
            };
            wait_ready(
                "consul cluster member",
                &dir,
                Duration::from_secs(90),
                || READY.at(http) && nodes(size + 1),
            )?;
            members.push(Server::controlled_at(
                format!("consul://{http}"),
                lifeline,
                READY,
                http,
                dir,
            ));
        }
        let agent = members.pop().ok_or("no agent")?;
        Ok(ConsulCluster {
            servers: members,
            agent,
            network,
        })
    }

    /// What each server answers itself to "who leads?" (`None`: it did not answer), for a
    /// failure's message.
    pub fn leader_views(&self) -> Vec<Option<String>> {
        self.servers
            .iter()
            .map(|server| {
                let http = crate::proxy::server_addr(&server.url)?;
                let answer = probe_at(http, b"GET /v1/status/leader HTTP/1.0\r\n\r\n")?;
                Some(answer.split("\r\n\r\n").nth(1)?.trim().to_owned())
            })
            .collect()
    }

    /// The index of the server that leads now, if one does (from the agent's view).
    pub fn leader(&self) -> Option<usize> {
        let port = crate::proxy::server_addr(&self.agent.url)?.port();
        let answer = probe(port, b"GET /v1/status/leader HTTP/1.0\r\n\r\n")?;
        let leader = answer
            .split("\r\n\r\n")
            .nth(1)?
            .trim()
            .trim_matches('"')
            .to_owned();
        self.servers.iter().position(|server| {
            let http = crate::proxy::server_addr(&server.url);
            // The leader's address is its RPC port: ask each server for its own.
            http.and_then(|http| probe_at(http, b"GET /v1/agent/self HTTP/1.0\r\n\r\n"))
                .is_some_and(|me| {
                    me.contains(&format!(
                        "\"ServerPort\":{}",
                        leader.rsplit(':').next().unwrap_or("x")
                    ))
                })
        })
    }
}
