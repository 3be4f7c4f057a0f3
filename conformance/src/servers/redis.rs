//! Redis: the single-server launchers (in memory, durable) and the Sentinel group.

use super::*;

/// Redis (and Sentinel) serves once it answers `PING`.
pub(crate) const READY: Readiness = Readiness {
    kind: "redis",
    check: |address| probe_at(address, b"PING\r\n").is_some_and(|r| r.starts_with("+PONG")),
};

/// Redis from the `redis-server` Debian package.
pub struct RedisProcess;

impl Launcher for RedisProcess {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn ready(&self, address: SocketAddr) -> bool {
        READY.at(address)
    }

    fn start(&self) -> Result<Server, String> {
        self.start_with(&[])
    }
}

impl RedisProcess {
    /// Starts a Redis like [`Launcher::start`] with `extra` arguments (e.g.
    /// `["--rename-command", "CONFIG", ""]` for a managed-like Redis).
    pub fn start_with(&self, extra: &[&str]) -> Result<Server, String> {
        let binary = find_binary("redis-server", "apt-get install redis-server")?;
        let dir = server_dir("redis")?;
        let port = free_port()?;
        let mut args = redis_args(port, &dir, false);
        args.extend(extra.iter().map(|a| a.to_string()));
        let lifeline = spawn_tied(&binary, &args, &dir)?;
        wait_ready("redis", &dir, Duration::from_secs(30), || READY.on(port))?;
        Ok(Server::controlled(
            format!("redis://127.0.0.1:{port}"),
            lifeline,
            READY,
            port,
            dir,
        ))
    }
}

/// Redis as [`RedisProcess`] starts it, with every write in its append-only file and fsynced
/// before it is answered (`appendfsync always`): a kill -9 and restart loses nothing
/// acknowledged (the robustness runs' nemesis kills it).
pub struct DurableRedisProcess;

impl Launcher for DurableRedisProcess {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn ready(&self, address: SocketAddr) -> bool {
        READY.at(address)
    }

    fn start(&self) -> Result<Server, String> {
        RedisProcess.start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }
}

/// The arguments of a test Redis on `port` with its files in `dir`; with `durable`, an
/// append-only file (fsync every second) that a restart reads back.
fn redis_args(port: u16, dir: &Path, durable: bool) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        if durable { "yes" } else { "no" },
        "--dir",
        &dir.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The service name the Sentinels of a [`RedisSentinelGroup`] monitor.
pub const SENTINEL_SERVICE: &str = "kvtest";

/// Redis with Sentinel on loopback ports, as users run it for failover: a primary, replicas
/// (`replicaof`), and Sentinels (`redis-server --sentinel`, from the `redis-server` package)
/// that monitor them as [`SENTINEL_SERVICE`] with a quorum of a majority, declaring a node down
/// after 1 s. Every process is a [`Server`] the tests can kill, restart and pause; gone when the
/// test process exits.
pub struct RedisSentinelGroup {
    /// The data nodes: the first started as the primary, the others as its replicas.
    pub nodes: Vec<Server>,
    /// The Sentinels.
    pub sentinels: Vec<Server>,
    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,.../kvtest`: every Sentinel, as users list
    /// them.
    pub url: String,
}

impl RedisSentinelGroup {
    /// Starts a primary, `replicas` replicas and `sentinels` Sentinels, and waits until the
    /// replicas are in sync and every Sentinel knows every replica and every other Sentinel.
    pub fn start(replicas: usize, sentinels: usize) -> Result<RedisSentinelGroup, String> {
        with_port_retries(|| Self::start_once(replicas, sentinels))
    }

    fn start_once(replicas: usize, sentinels: usize) -> Result<RedisSentinelGroup, String> {
        let binary = find_binary("redis-server", "apt-get install redis-server")?;
        let mut nodes = Vec::with_capacity(replicas + 1);
        let mut replica_dirs = Vec::with_capacity(replicas);
        let mut primary = None;
        for _ in 0..=replicas {
            let dir = server_dir("redis-node")?;
            let port = free_port()?;
            // A config file, as deployments have: the Sentinels rewrite it (`CONFIG REWRITE`)
            // when they make a node a primary or a replica, so that a restart keeps its role.
            let config = dir.join("redis.conf");
            let mut lines = format!(
                "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly yes\ndir {}\n",
                dir.display()
            );
            if let Some(primary) = primary {
                lines.push_str(&format!("replicaof 127.0.0.1 {primary}\n"));
                replica_dirs.push((port, dir.clone()));
            }
            std::fs::write(&config, lines)
                .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
            primary.get_or_insert(port);
            let args = [config.to_string_lossy().into_owned()];
            let lifeline = spawn_tied(&binary, &args, &dir)?;
            wait_ready("redis node", &dir, Duration::from_secs(30), || {
                READY.on(port)
            })?;
            nodes.push(Server::controlled(
                format!("redis://127.0.0.1:{port}"),
                lifeline,
                READY,
                port,
                dir,
            ));
        }
        let primary = primary.ok_or("no primary")?;
        let quorum = sentinels / 2 + 1;
        let mut started = Vec::with_capacity(sentinels);
        for _ in 0..sentinels {
            let dir = server_dir("redis-sentinel")?;
            let port = free_port()?;
            let config = dir.join("sentinel.conf");
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary} {quorum}\n\
                     sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                     sentinel failover-timeout {SENTINEL_SERVICE} 10000\n\
                     sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                    dir = dir.display()
                ),
            )
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
            let args = [config.to_string_lossy().into_owned(), "--sentinel".into()];
            let lifeline = spawn_tied(&binary, &args, &dir)?;
            started.push((lifeline, port, dir));
        }
        let mut group = Vec::with_capacity(sentinels);
        for (lifeline, port, dir) in started {
            let known = |field: &str, count: usize| {
                sentinel_master_field(port, field)
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| n >= count)
            };
            wait_ready("redis sentinel", &dir, Duration::from_secs(60), || {
                known("num-slaves", replicas) && known("num-other-sentinels", sentinels - 1)
            })?;
            group.push(Server::controlled(
                format!("redis://127.0.0.1:{port}"),
                lifeline,
                READY,
                port,
                dir,
            ));
        }
        for (port, dir) in &replica_dirs {
            wait_ready("redis replica sync", dir, Duration::from_secs(30), || {
                probe(*port, b"INFO replication\r\nQUIT\r\n")
                    .is_some_and(|r| r.contains("master_link_status:up"))
            })?;
        }
        let hosts = group
            .iter()
            .map(|s| s.url.trim_start_matches("redis://").to_owned())
            .collect::<Vec<_>>()
            .join(",");
        Ok(RedisSentinelGroup {
            nodes,
            sentinels: group,
            url: format!("redis+sentinel://{hosts}/{SENTINEL_SERVICE}"),
        })
    }

    /// The index in `nodes` of the node the Sentinels name as the primary now (asking each
    /// Sentinel until one answers).
    pub fn primary(&self) -> Option<usize> {
        let request = format!("SENTINEL get-master-addr-by-name {SENTINEL_SERVICE}\r\n");
        let port = self.sentinels.iter().find_map(|sentinel| {
            let sentinel = crate::proxy::server_addr(&sentinel.url)?.port();
            let answer = probe_until(sentinel, request.as_bytes(), whole_array)?;
            // *2 $9 127.0.0.1 $5 PORT
            answer.split("\r\n").nth(4).map(str::to_owned)
        })?;
        self.nodes
            .iter()
            .position(|node| node.url.ends_with(&format!(":{port}")))
    }
}

impl RedisSentinelGroup {
    /// True when every node is up and in sync: the primary the Sentinels name reports every
    /// other node as a replica that finished its sync (`state=online`).
    pub fn in_sync(&self) -> bool {
        let Some(primary) = self.primary() else {
            return false;
        };
        let Some(port) = crate::proxy::server_addr(&self.nodes[primary].url).map(|a| a.port())
        else {
            return false;
        };
        let Some(info) = probe(port, b"INFO replication\r\nQUIT\r\n") else {
            return false;
        };
        info.contains("role:master") && info.matches("state=online").count() == self.nodes.len() - 1
    }
}

/// True once `answer` holds a whole RESP array of bulk strings (`*N`, then N `$len` lines and
/// their values) or a null one: a Sentinel does not close the connection on `QUIT`.
fn whole_array(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some(header) = text.strip_prefix('*').and_then(|t| t.split("\r\n").next()) else {
        return false;
    };
    match header.parse::<i64>() {
        Ok(n) if n < 0 => text.contains("\r\n"),
        Ok(n) => text.matches("\r\n").count() as i64 > 2 * n,
        Err(_) => false,
    }
}

/// A field of `SENTINEL master` [`SENTINEL_SERVICE`] as a Sentinel on `port` reports it.
fn sentinel_master_field(port: u16, field: &str) -> Option<String> {
    let request = format!("SENTINEL master {SENTINEL_SERVICE}\r\n");
    let answer = probe_until(port, request.as_bytes(), whole_array)?;
    let lines: Vec<&str> = answer.split("\r\n").collect();
    let at = lines.iter().position(|line| *line == field)?;
    lines.get(at + 2).map(|value| (*value).to_owned())
}
