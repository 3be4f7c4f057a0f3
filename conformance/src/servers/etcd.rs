//! etcd: the single-server launcher and the cluster of members on loopback ports.

use super::*;

/// etcd serves once `/health` says so.
pub(crate) const READY: Readiness = Readiness {
    kind: "etcd",
    check: |address| {
        probe_at(address, b"GET /health HTTP/1.0\r\n\r\n")
            .is_some_and(|r| r.contains("\"health\":\"true\""))
    },
};

/// etcd from the `etcd-server` Debian package.
pub struct EtcdProcess;

impl Launcher for EtcdProcess {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn ready(&self, address: SocketAddr) -> bool {
        READY.at(address)
    }

    fn start(&self) -> Result<Server, String> {
        let binary = find_binary("etcd", "apt-get install etcd-server")?;
        let dir = server_dir("etcd")?;
        let (client, peer) = (free_port()?, free_port()?);
        let args = etcd_args(
            "kvtest",
            &dir,
            client,
            peer,
            &format!("kvtest=http://127.0.0.1:{peer}"),
        );
        let lifeline = spawn_tied(&binary, &args, &dir)?;
        wait_ready("etcd", &dir, Duration::from_secs(30), || READY.on(client))?;
        Ok(Server::controlled(
            format!("etcd://127.0.0.1:{client}"),
            lifeline,
            READY,
            client,
            dir,
        ))
    }
}

/// The arguments of an etcd member named `name` with its data in `dir`, serving clients on
/// `client` and peers on `peer`, in the cluster `initial` (`name=http://...,...`).
fn etcd_args(name: &str, dir: &Path, client: u16, peer: u16, initial: &str) -> Vec<String> {
    etcd_member_args(name, dir, client, (peer, peer), initial)
}

/// [`etcd_args`] for a member that listens for peers on `peer.0` and tells them to reach it at
/// `peer.1` (a proxy in front of it, to cut the traffic between members).
fn etcd_member_args(
    name: &str,
    dir: &Path,
    client: u16,
    peer: (u16, u16),
    initial: &str,
) -> Vec<String> {
    let (peer, advertised) = peer;
    vec![
        "--name".to_owned(),
        name.to_owned(),
        "--data-dir".to_owned(),
        dir.join("data").to_string_lossy().into_owned(),
        "--listen-client-urls".to_owned(),
        format!("http://127.0.0.1:{client}"),
        "--advertise-client-urls".to_owned(),
        format!("http://127.0.0.1:{client}"),
        "--listen-peer-urls".to_owned(),
        format!("http://127.0.0.1:{peer}"),
        "--initial-advertise-peer-urls".to_owned(),
        format!("http://127.0.0.1:{advertised}"),
        "--initial-cluster".to_owned(),
        initial.to_owned(),
        "--log-level".to_owned(),
        "warn".to_owned(),
        // The v2 API as well (kv speaks v3 only): scripts/bench-libkv sets kv beside Go libkv,
        // whose etcd store speaks v2, on the same server.
        "--enable-v2=true".to_owned(),
        // Where a test enables authentication, tokens expire after 2 idle seconds (5 minutes
        // by default), so that a client's renewal of its token can be tested.
        "--auth-token-ttl=2".to_owned(),
    ]
}

/// An etcd cluster of several members on loopback ports (the `etcd-server` package), each one a
/// [`Server`] the tests can kill, restart and pause; gone when the test process exits.
pub struct EtcdCluster {
    /// The members, in the order of the URL's hosts.
    pub members: Vec<Server>,
    /// `etcd://127.0.0.1:A,127.0.0.1:B,...`: every member, as users list a cluster.
    pub url: String,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each is healthy (a leader is elected).
    pub fn start(size: usize) -> Result<EtcdCluster, String> {
        with_port_retries(|| Self::start_once(size))
    }

    /// Starts `size` members whose traffic to each other goes through a [`FaultProxy`](crate::proxy::FaultProxy) per
    /// member (member `i` is reached by its peers at `proxies[i][0]`): holding a member's proxy
    /// cuts what its peers send it over the connections they open to it (etcd's pipeline
    /// messages and the streams that carry its own messages out), a partition between
    /// members that clients do not see.
    pub async fn start_with_peer_proxies(
        size: usize,
    ) -> Result<(EtcdCluster, Vec<Vec<crate::proxy::FaultProxy>>), String> {
        start_behind_proxies(size, 1, Self::start_members).await
    }

    fn start_once(size: usize) -> Result<EtcdCluster, String> {
        Self::start_members(&MemberPorts::for_members(size, 1)?)
    }

    /// Starts a member per [`MemberPorts`] (one peer port each).
    fn start_members(ports: &[MemberPorts]) -> Result<EtcdCluster, String> {
        let binary = find_binary("etcd", "apt-get install etcd-server")?;
        let size = ports.len();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, m)| format!("m{i}=http://127.0.0.1:{}", m.reached[0]))
            .collect::<Vec<_>>()
            .join(",");
        // One token for the whole cluster, unique to it.
        let token = format!("kvtest-{}", ports[0].client);
        let mut started = Vec::with_capacity(size);
        for (i, member) in ports.iter().enumerate() {
            let dir = server_dir("etcd-member")?;
            let mut args = etcd_member_args(
                &format!("m{i}"),
                &dir,
                member.client,
                (member.bound[0], member.reached[0]),
                &initial,
            );
            args.extend([
                "--initial-cluster-state".to_owned(),
                "new".to_owned(),
                "--initial-cluster-token".to_owned(),
                token.clone(),
            ]);
            let lifeline = spawn_tied(&binary, &args, &dir)?;
            started.push((lifeline, member.client, dir));
        }
        let mut members = Vec::with_capacity(size);
        for (lifeline, client, dir) in started {
            wait_ready("etcd member", &dir, Duration::from_secs(60), || {
                READY.on(client)
            })?;
            members.push(Server::controlled(
                format!("etcd://127.0.0.1:{client}"),
                lifeline,
                READY,
                client,
                dir,
            ));
        }
        let hosts = ports
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",");
        Ok(EtcdCluster {
            members,
            url: format!("etcd://{hosts}"),
        })
    }
}

impl EtcdCluster {
    /// The index of the member that leads now, if one does (each member's status, from etcd's
    /// HTTP gateway: the member whose ID is the leader's).
    pub fn leader(&self) -> Option<usize> {
        let field = |text: &str, name: &str| -> Option<String> {
            let at = text.find(&format!("\"{name}\":\""))? + name.len() + 4;
            Some(text[at..].split('"').next()?.to_owned())
        };
        self.members.iter().position(|member| {
            crate::proxy::server_addr(&member.url)
                .and_then(|addr| {
                    probe(
                        addr.port(),
                        b"POST /v3/maintenance/status HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
                    )
                })
                .is_some_and(|status| {
                    let me = field(&status, "member_id");
                    me.is_some() && me == field(&status, "leader")
                })
        })
    }
}
