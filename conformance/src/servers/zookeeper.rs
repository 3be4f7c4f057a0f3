//! ZooKeeper: the standalone launcher and the ensemble.

use super::*;

/// A standalone ZooKeeper serves once `srvr` says standalone (`ruok` answers too early).
pub(crate) const READY: Readiness = Readiness {
    kind: "zookeeper",
    check: |address| probe_at(address, b"srvr").is_some_and(|r| r.contains("Mode: standalone")),
};

/// A member of an ensemble serves once it is the leader or follows one.
const MEMBER_READY: Readiness = Readiness {
    kind: "zookeeper member",
    check: |address| {
        probe_at(address, b"srvr")
            .is_some_and(|r| r.contains("Mode: leader") || r.contains("Mode: follower"))
    },
};

/// The JVM that runs ZooKeeper, once the ZooKeeper jars are known to be installed.
fn zookeeper_java() -> Result<PathBuf, String> {
    let java = find_binary("java", "apt-get install default-jre-headless")?;
    if !Path::new("/usr/share/java/zookeeper.jar").is_file() {
        return Err("/usr/share/java/zookeeper.jar is missing; install it with: apt-get install libzookeeper-java (or run scripts/test)".into());
    }
    Ok(java)
}

/// Writes `dir/zoo.cfg` (the settings every test server shares, its data in `dir/data`,
/// clients on `client`, then `extra`) and starts `main_class` on it, tied to this process.
/// TTL nodes are on and expired ones reaped every 500 ms.
fn spawn_zookeeper(
    java: &Path,
    dir: &Path,
    client: u16,
    extra: &str,
    main_class: &str,
) -> Result<ChildStdin, String> {
    let config = dir.join("zoo.cfg");
    let settings = format!(
        "tickTime=200\ndataDir={}\nclientPort={client}\nclientPortAddress=127.0.0.1\n\
         admin.enableServer=false\n4lw.commands.whitelist=srvr,ruok,wchs\nextendedTypesEnabled=true\n\
         minSessionTimeout=400\nmaxSessionTimeout=60000\n{extra}",
        dir.join("data").display()
    );
    std::fs::write(&config, settings)
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let args: Vec<String> = vec![
        "-Dznode.container.checkIntervalMs=500".into(),
        "-Dzookeeper.admin.enableServer=false".into(),
        "-cp".into(),
        "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar".into(),
        main_class.into(),
        config.to_string_lossy().into_owned(),
    ];
    spawn_tied(java, &args, dir)
}

/// A ZooKeeper ensemble of several members on loopback ports (`libzookeeper-java`), each one a
/// [`Server`] the tests can kill, restart and pause; gone when the test process exits.
pub struct ZooKeeperEnsemble {
    /// The members, in the order of the URL's hosts.
    pub members: Vec<Server>,
    /// `zookeeper://127.0.0.1:A,127.0.0.1:B,...`: every member.
    pub url: String,
}

impl ZooKeeperEnsemble {
    /// Starts `size` members and waits until each leads or follows.
    pub fn start(size: usize) -> Result<ZooKeeperEnsemble, String> {
        with_port_retries(|| Self::start_once(size))
    }

    /// Starts `size` members whose traffic to each other goes through two
    /// [`FaultProxy`](crate::proxy::FaultProxy)s per member, one for its quorum port and one
    /// for its election port (member `i` is reached by its peers at `proxies[i]`): holding
    /// them cuts every connection its peers open to it, a partition between members that
    /// clients do not see. Each member's own line in its configuration names the ports it
    /// binds; the others' name their proxies.
    pub async fn start_with_peer_proxies(
        size: usize,
    ) -> Result<(ZooKeeperEnsemble, Vec<Vec<crate::proxy::FaultProxy>>), String> {
        start_behind_proxies(size, 2, Self::start_members).await
    }

    fn start_once(size: usize) -> Result<ZooKeeperEnsemble, String> {
        Self::start_members(&MemberPorts::for_members(size, 2)?)
    }

    /// Starts a member per [`MemberPorts`] (peer ports: quorum, then election).
    fn start_members(ports: &[MemberPorts]) -> Result<ZooKeeperEnsemble, String> {
        let java = zookeeper_java()?;
        let size = ports.len();
        // Member `me`'s view of the ensemble: its own ports, the others' as reached.
        let servers = |me: usize| -> String {
            ports
                .iter()
                .enumerate()
                .map(|(i, member)| {
                    let peer = match i == me {
                        true => &member.bound,
                        false => &member.reached,
                    };
                    format!(
                        "server.{}=127.0.0.1:{}:{};127.0.0.1:{}\n",
                        i + 1,
                        peer[0],
                        peer[1],
                        member.client
                    )
                })
                .collect()
        };
        let mut started = Vec::with_capacity(size);
        for (i, member) in ports.iter().enumerate() {
            let dir = server_dir("zookeeper-member")?;
            let data = dir.join("data");
            std::fs::create_dir_all(&data)
                .and_then(|()| std::fs::write(data.join("myid"), format!("{}\n", i + 1)))
                .map_err(|e| format!("cannot prepare {}: {e}", data.display()))?;
            let lifeline = spawn_zookeeper(
                &java,
                &dir,
                member.client,
                &format!("initLimit=20\nsyncLimit=10\n{}", servers(i)),
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            )?;
            started.push((lifeline, member.client, dir));
        }
        let mut members = Vec::with_capacity(size);
        for (lifeline, client, dir) in started {
            wait_ready("zookeeper member", &dir, Duration::from_secs(90), || {
                MEMBER_READY.on(client)
            })?;
            members.push(Server::controlled(
                format!("zookeeper://127.0.0.1:{client}"),
                lifeline,
                MEMBER_READY,
                client,
                dir,
            ));
        }
        let hosts = ports
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",");
        Ok(ZooKeeperEnsemble {
            members,
            url: format!("zookeeper://{hosts}"),
        })
    }

    /// The index of the member that leads now, if one does.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|member| {
            crate::proxy::server_addr(&member.url)
                .and_then(|addr| probe(addr.port(), b"srvr"))
                .is_some_and(|r| r.contains("Mode: leader"))
        })
    }
}

/// ZooKeeper 3.8 from `libzookeeper-java` on the default JRE, standalone, with TTL nodes on and
/// expired ones reaped every 500 ms.
pub struct ZooKeeperProcess;

impl Launcher for ZooKeeperProcess {
    fn kind(&self) -> &'static str {
        "zookeeper"
    }

    fn ready(&self, address: SocketAddr) -> bool {
        READY.at(address)
    }

    fn start(&self) -> Result<Server, String> {
        let java = zookeeper_java()?;
        let dir = server_dir("zookeeper")?;
        let port = free_port()?;
        let lifeline = spawn_zookeeper(
            &java,
            &dir,
            port,
            "",
            "org.apache.zookeeper.server.ZooKeeperServerMain",
        )?;
        // `ruok` answers before the server serves; `srvr` reports the mode once it does.
        wait_ready("zookeeper", &dir, Duration::from_secs(60), || {
            READY.on(port)
        })?;
        Ok(Server::controlled(
            format!("zookeeper://127.0.0.1:{port}"),
            lifeline,
            READY,
            port,
            dir,
        ))
    }
}
