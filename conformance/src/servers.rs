//! Real servers for the networked backends' tests: one throwaway instance per server kind per
//! test binary, on a free 127.0.0.1 port, in its own temp directory, gone when the binary exits.
//!
//! Provisioning, per kind (`etcd`, `redis`, ...):
//! 1. `KV_TEST_<KIND>_URL` (e.g. `KV_TEST_ETCD_URL=etcd://127.0.0.1:2379`): use that server;
//! 2. otherwise a [`Launcher`] starts one — the process launcher runs the binary on `PATH`;
//!    with `KV_TEST_PROVISION=containers` (or `KV_TEST_<KIND>_PROVISION=containers`) and the
//!    `testcontainers` feature, the container launcher (`crate::containers`) runs its image.
//!
//! When no server can be had the test fails, naming the missing binary and how to install it —
//! unless the kind is listed in `KV_TEST_SKIP` (comma-separated), which is reported as
//! `SKIPPED` on stderr. CI never sets it. Cases isolate themselves by random root prefix.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running server the tests can use.
pub struct Server {
    /// The store URL of the server's root, e.g. `etcd://127.0.0.1:40123`.
    pub url: String,
    /// Keeps a launched process alive: its wrapper kills it when this closes (at exit), and
    /// takes commands (`kill`, `start`, `pause`, `resume`) on it, one per line.
    lifeline: Option<Mutex<ChildStdin>>,
    /// For a process this crate started: its kind, readiness port and directory.
    process: Option<(&'static str, SocketAddr, PathBuf)>,
}

impl Server {
    /// A server this process started; it is stopped when the returned value (and its
    /// `lifeline`, from [`spawn_tied`]) is dropped.
    pub fn launched(url: impl Into<String>, lifeline: ChildStdin) -> Server {
        Server {
            url: url.into(),
            lifeline: Some(Mutex::new(lifeline)),
            process: None,
        }
    }

    /// A server someone else runs.
    pub fn existing(url: impl Into<String>) -> Server {
        Server {
            url: url.into(),
            lifeline: None,
            process: None,
        }
    }

    /// A process started with [`spawn_tied`] that the tests can also kill, restart and pause:
    /// `kind` and `port` for [`ready`], `dir` for its log.
    pub fn controlled(
        url: impl Into<String>,
        lifeline: ChildStdin,
        kind: &'static str,
        port: u16,
        dir: PathBuf,
    ) -> Server {
        Server::controlled_at(url, lifeline, kind, loopback(port), dir)
    }

    /// [`Server::controlled`] for a server that listens on `address` (in a network namespace
    /// of the test's, [`crate::netns`]).
    pub fn controlled_at(
        url: impl Into<String>,
        lifeline: ChildStdin,
        kind: &'static str,
        address: SocketAddr,
        dir: PathBuf,
    ) -> Server {
        Server {
            url: url.into(),
            lifeline: Some(Mutex::new(lifeline)),
            process: Some((kind, address, dir)),
        }
    }

    fn command(&self, command: &str) -> Result<&(&'static str, SocketAddr, PathBuf), String> {
        let (Some(lifeline), Some(process)) = (&self.lifeline, &self.process) else {
            return Err(format!("{} is not a process these tests control", self.url));
        };
        let mut lifeline = lifeline.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(lifeline, "{command}")
            .and_then(|()| lifeline.flush())
            .map_err(|e| format!("cannot control the server wrapper: {e}"))?;
        Ok(process)
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and waits until its port is
    /// closed.
    pub fn kill9(&self) -> Result<(), String> {
        let (_, address, _) = self.command("kill")?;
        let started = Instant::now();
        while connects(*address) {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!("{address} still open after kill -9"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the server again (same binary, arguments, data directory and port) after
    /// [`Server::kill9`], and waits until it is ready.
    pub fn restart(&self) -> Result<(), String> {
        let (kind, address, dir) = self.command("start")?;
        wait_ready(kind, dir, Duration::from_secs(60), || {
            ready_at(kind, *address)
        })
    }

    /// Freezes the server (SIGSTOP): its connections stay open and it answers nothing. Returns
    /// once the process is stopped (the wrapper signals it asynchronously: a call made right
    /// after an unconfirmed pause could still be answered).
    pub fn pause(&self) -> Result<(), String> {
        let (_, _, dir) = self.command("pause")?;
        wait_for_state(dir, true)
    }

    /// Thaws a paused server (SIGCONT) and returns once it runs again.
    pub fn resume(&self) -> Result<(), String> {
        let (_, _, dir) = self.command("resume")?;
        wait_for_state(dir, false)
    }
}

/// The file in a [`spawn_tied`] server's directory that holds its process id.
const PID_FILE: &str = "kv-test-server.pid";

/// Waits (up to 10 s) until the process [`spawn_tied`] runs in `dir` is stopped (`true`) or
/// not stopped (`false`), as `/proc/<pid>/stat` tells.
fn wait_for_state(dir: &Path, stopped: bool) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let state = std::fs::read_to_string(dir.join(PID_FILE))
            .ok()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok())
            // The state follows the command name, which is in parentheses.
            .and_then(|stat| {
                Some(
                    stat[stat.rfind(')')? + 1..]
                        .trim_start()
                        .starts_with(['T', 't']),
                )
            });
        if state == Some(stopped) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            let want = if stopped { "stopped" } else { "running" };
            return Err(format!(
                "the server in {} is not {want} after 10 s",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// True if something accepts connections on `address`.
fn connects(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
}

/// 127.0.0.1:`port`.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts a throwaway server of one kind. The process launcher is one implementation; a
/// container launcher is another.
pub trait Launcher: Send + Sync {
    /// The kind, lower-case (`etcd`, `redis`): used in `KV_TEST_<KIND>_URL` and `KV_TEST_SKIP`.
    fn kind(&self) -> &'static str;
    /// Starts a server and waits until it is ready.
    fn start(&self) -> Result<Server, String>;
}

/// What a test gets for a server kind.
pub enum Provision {
    /// A server to use.
    Ready(Arc<Server>),
    /// The kind is opted out with `KV_TEST_SKIP`; the message says so.
    Skipped(String),
}

/// Servers by kind, or why none could be had.
type Servers = HashMap<&'static str, Result<Arc<Server>, String>>;

/// The server for `launcher`'s kind: started on first use, shared by every test of the binary.
/// Panics, with what to install, if none can be had and the kind is not opted out.
pub fn provision(launcher: &dyn Launcher) -> Provision {
    let kind = launcher.kind();
    if skipped(kind) {
        return Provision::Skipped(format!(
            "SKIPPED: {kind} tests, because KV_TEST_SKIP contains {kind:?}; they have NOT run"
        ));
    }
    static SERVERS: OnceLock<Mutex<Servers>> = OnceLock::new();
    let mut servers = SERVERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let server = servers.entry(kind).or_insert_with(|| {
        let variable = format!("KV_TEST_{}_URL", kind.to_ascii_uppercase());
        match std::env::var(&variable) {
            Ok(url) if !url.is_empty() => Ok(Arc::new(Server::existing(url))),
            _ if in_containers(kind) => start_container(kind).map(Arc::new),
            _ => with_port_retries(|| launcher.start()).map(Arc::new),
        }
    });
    match server {
        Ok(server) => Provision::Ready(server.clone()),
        Err(reason) => panic!("no {kind} server for the tests: {reason}"),
    }
}

/// True if `KV_TEST_<KIND>_PROVISION` (or else `KV_TEST_PROVISION`) asks for containers.
fn in_containers(kind: &str) -> bool {
    let own = format!("KV_TEST_{}_PROVISION", kind.to_ascii_uppercase());
    std::env::var(own)
        .or_else(|_| std::env::var("KV_TEST_PROVISION"))
        .is_ok_and(|mode| mode.trim().eq_ignore_ascii_case("containers"))
}

#[cfg(feature = "testcontainers")]
fn start_container(kind: &str) -> Result<Server, String> {
    let spec = crate::containers::ContainerSpec::of(kind)
        .ok_or_else(|| format!("no container spec for {kind}"))?;
    crate::containers::ContainerLauncher(spec).start()
}

#[cfg(not(feature = "testcontainers"))]
fn start_container(kind: &str) -> Result<Server, String> {
    Err(format!(
        "{kind} in containers was asked for (KV_TEST_PROVISION), but this build lacks the \
         feature: run with --features conformance/testcontainers"
    ))
}

/// For tests that start their own servers of `kind`: true, after printing `SKIPPED: what`,
/// if `KV_TEST_SKIP` opts the kind out.
pub fn opted_out(kind: &str, what: &str) -> bool {
    let skip = skipped(kind);
    if skip {
        eprintln!("SKIPPED: {kind} {what} (KV_TEST_SKIP)");
    }
    skip
}

fn skipped(kind: &str) -> bool {
    std::env::var("KV_TEST_SKIP")
        .is_ok_and(|list| list.split(',').any(|k| k.trim().eq_ignore_ascii_case(kind)))
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it right after), never
/// one this process was given before: the kernel may hand a just-released port out again, and
/// a server given the same port for two of its listeners fails to start (seen: a Consul agent
/// with its HTTP and Serf WAN ports equal).
pub fn free_port() -> Result<u16, String> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err(format!(
        "no free port on 127.0.0.1 that this process was not given already ({} given)",
        given.len()
    ))
}

/// Finds `binary` on `PATH`, or says how to install it.
pub fn find_binary(binary: &str, install: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("`{binary}` is not on PATH; install it with: {install} (or run scripts/test, which does)"))
}

/// Runs `program args` in `dir` so that it dies with this process: a shell wrapper waits on
/// our end of a pipe and kills the server (and removes `dir`) when that pipe closes, which
/// happens when this process exits, however it exits. Meanwhile it takes commands on the pipe,
/// one per line: `kill` (SIGKILL), `start` (again, same arguments), `pause` (SIGSTOP),
/// `resume` (SIGCONT); see [`Server::controlled`]. With `KV_KEEP_SERVER_LOGS=DIR` the server's
/// log is copied into DIR before `dir` goes.
pub fn spawn_tied(program: &Path, args: &[String], dir: &Path) -> Result<ChildStdin, String> {
    let log = dir.join("server.log");
    let script = r#"dir=$1; log=$2; shift 2
run() { "$@" >>"$log" 2>&1 & pid=$!; echo "$pid" >"$dir/$PID_FILE"; }
run "$@"
while read -r command; do
  case "$command" in
    kill) kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null ;;
    start) run "$@" ;;
    pause) kill -STOP "$pid" 2>/dev/null ;;
    resume) kill -CONT "$pid" 2>/dev/null ;;
  esac
done
kill -CONT "$pid" 2>/dev/null; kill "$pid" 2>/dev/null; sleep 0.2; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
if [ -n "$KV_KEEP_SERVER_LOGS" ]; then cp "$log" "$KV_KEEP_SERVER_LOGS/${dir##*/}.log"; fi
rm -rf "$dir""#;
    let mut child = Command::new("sh")
        .env("PID_FILE", PID_FILE)
        .arg("-c")
        .arg(script)
        .arg("kv-test-server")
        .arg(dir)
        .arg(&log)
        .arg(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run sh to start {}: {e}", program.display()))?;
    child
        .stdin
        .take()
        .ok_or_else(|| "the server wrapper has no stdin".to_string())
}

/// True once a server of `kind` answers on `port` as ready to serve: the same check for a
/// process and for a container. etcd: `/health`; Redis: `PING`; Consul: a leader is known
/// (`/v1/status/leader`); ZooKeeper: `srvr` says standalone (`ruok` answers too early).
pub fn ready(kind: &str, port: u16) -> bool {
    ready_at(kind, loopback(port))
}

/// [`ready`] for a server on `address`.
pub fn ready_at(kind: &str, address: SocketAddr) -> bool {
    let probe = |request: &[u8]| probe_at(address, request);
    match kind {
        "etcd" => probe(b"GET /health HTTP/1.0\r\n\r\n")
            .is_some_and(|r| r.contains("\"health\":\"true\"")),
        "redis" => probe(b"PING\r\n").is_some_and(|r| r.starts_with("+PONG")),
        "consul" => probe(b"GET /v1/status/leader HTTP/1.0\r\n\r\n")
            .and_then(|r| r.split("\r\n\r\n").nth(1).map(|body| body.trim().len() > 2))
            .unwrap_or(false),
        "zookeeper" => probe(b"srvr").is_some_and(|r| r.contains("Mode: standalone")),
        // A member of an ensemble serves once it is the leader or follows one.
        "zookeeper-member" => probe(b"srvr")
            .is_some_and(|r| r.contains("Mode: leader") || r.contains("Mode: follower")),
        _ => false,
    }
}

/// Polls `ready` every 100 ms until it returns true or `within` passes; the error includes the
/// server's log.
pub fn wait_ready(
    what: &str,
    dir: &Path,
    within: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let started = Instant::now();
    let log = || std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let mut checked = 0;
    while started.elapsed() < within {
        if ready() {
            return Ok(());
        }
        // A port taken between `free_port` and the server's bind (by any process's outgoing
        // connection, say) fails the start at once: say so now, for `with_port_retries`.
        checked += 1;
        if checked % 5 == 0 && port_clash(&log()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = log();
    let tail: String = log
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(format!(
        "{what} was not ready within {within:?}; its log ends with:\n{tail}"
    ))
}

/// True if a server log (or a start error quoting it) says a port was taken.
fn port_clash(text: &str) -> bool {
    text.to_ascii_lowercase().contains("address already in use")
}

/// Runs `start` again (with the new free ports it picks) when it failed because a port it
/// picked was taken before the server bound it; at most three attempts.
pub fn with_port_retries<T>(mut start: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut attempt = 1;
    loop {
        match start() {
            Err(error) if attempt < 3 && port_clash(&error) => attempt += 1,
            result => return result,
        }
    }
}

/// Sends `request` to 127.0.0.1:`port` and returns what comes back (up to 64 KiB, 1 s timeouts;
/// a `PING` ends at its answer, anything else when the server closes).
pub fn probe(port: u16, request: &[u8]) -> Option<String> {
    probe_at(loopback(port), request)
}

/// [`probe`] of a server on `address`.
pub fn probe_at(address: SocketAddr, request: &[u8]) -> Option<String> {
    let ping = request.starts_with(b"PING");
    probe_until_at(address, request, |answer| ping && !answer.is_empty())
}

/// [`probe`] that returns as soon as `complete` says the answer so far is whole.
pub fn probe_until(port: u16, request: &[u8], complete: impl Fn(&[u8]) -> bool) -> Option<String> {
    probe_until_at(loopback(port), request, complete)
}

fn probe_until_at(
    address: SocketAddr,
    request: &[u8],
    complete: impl Fn(&[u8]) -> bool,
) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    stream.write_all(request).ok()?;
    let mut buffer = vec![0; 65536];
    let mut filled = 0;
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
        if complete(&buffer[..filled]) {
            break;
        }
    }
    Some(String::from_utf8_lossy(&buffer[..filled]).into_owned())
}

/// A fresh temp directory for a server's data, kept until the wrapper removes it.
pub fn server_dir(kind: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "kv-test-{kind}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// etcd from the `etcd-server` Debian package.
pub struct EtcdProcess;

impl Launcher for EtcdProcess {
    fn kind(&self) -> &'static str {
        "etcd"
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
        wait_ready("etcd", &dir, Duration::from_secs(30), || {
            ready("etcd", client)
        })?;
        Ok(Server::controlled(
            format!("etcd://127.0.0.1:{client}"),
            lifeline,
            "etcd",
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

/// The ports of one cluster member: its client port, the peer ports it binds, and where its
/// peers reach each of them (the same ports, or the ports of proxies in front of them).
struct MemberPorts {
    /// Its client port (never behind a proxy).
    client: u16,
    /// The peer ports it binds.
    bound: Vec<u16>,
    /// Where its peers reach each of them.
    reached: Vec<u16>,
}

impl MemberPorts {
    /// Free ports for a member with `peer_ports` peer ports, reached directly.
    fn direct(peer_ports: usize) -> Result<MemberPorts, String> {
        let client = free_port()?;
        let bound = (0..peer_ports)
            .map(|_| free_port())
            .collect::<Result<Vec<u16>, String>>()?;
        Ok(MemberPorts {
            client,
            reached: bound.clone(),
            bound,
        })
    }

    /// Free ports for each of `size` members.
    fn for_members(size: usize, peer_ports: usize) -> Result<Vec<MemberPorts>, String> {
        (0..size).map(|_| MemberPorts::direct(peer_ports)).collect()
    }
}

/// Starts `size` members with `proxied` peer ports each, every one behind a proxy of its own
/// (member `i`'s proxies are `proxies[i]`, in the order of its ports), by `start`; again, with
/// new ports, if a port was taken meanwhile.
async fn start_behind_proxies<T>(
    size: usize,
    proxied: usize,
    start: impl Fn(&[MemberPorts]) -> Result<T, String>,
) -> Result<(T, Vec<Vec<crate::faults::FaultProxy>>), String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut members = MemberPorts::for_members(size, proxied)?;
        let mut proxies = Vec::with_capacity(size);
        for ports in &mut members {
            let mut own = Vec::new();
            for (port, reached) in ports.bound.iter().zip(&mut ports.reached) {
                let target = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
                let proxy = crate::faults::FaultProxy::start(target)
                    .await
                    .map_err(|e| format!("peer proxy: {e}"))?;
                *reached = proxy.addr().port();
                own.push(proxy);
            }
            proxies.push(own);
        }
        match tokio::task::block_in_place(|| start(&members)) {
            Ok(cluster) => return Ok((cluster, proxies)),
            Err(e) if attempt < 3 && port_clash(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

impl EtcdCluster {
    /// Starts `size` members and waits until each is healthy (a leader is elected).
    pub fn start(size: usize) -> Result<EtcdCluster, String> {
        with_port_retries(|| Self::start_once(size))
    }

    /// Starts `size` members whose traffic to each other goes through a [`FaultProxy`](crate::faults::FaultProxy) per
    /// member (member `i` is reached by its peers at `proxies[i][0]`): holding a member's proxy
    /// cuts what its peers send it over the connections they open to it (etcd's pipeline
    /// messages and the streams that carry its own messages out), a partition between
    /// members that clients do not see.
    pub async fn start_with_peer_proxies(
        size: usize,
    ) -> Result<(EtcdCluster, Vec<Vec<crate::faults::FaultProxy>>), String> {
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
                ready("etcd", client)
            })?;
            members.push(Server::controlled(
                format!("etcd://127.0.0.1:{client}"),
                lifeline,
                "etcd",
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
            crate::faults::server_addr(&member.url)
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

/// Redis from the `redis-server` Debian package.
pub struct RedisProcess;

impl Launcher for RedisProcess {
    fn kind(&self) -> &'static str {
        "redis"
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
        wait_ready("redis", &dir, Duration::from_secs(30), || {
            ready("redis", port)
        })?;
        Ok(Server::controlled(
            format!("redis://127.0.0.1:{port}"),
            lifeline,
            "redis",
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
                ready("redis", port)
            })?;
            nodes.push(Server::controlled(
                format!("redis://127.0.0.1:{port}"),
                lifeline,
                "redis",
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
                "redis",
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
            let sentinel = crate::faults::server_addr(&sentinel.url)?.port();
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
        let Some(port) = crate::faults::server_addr(&self.nodes[primary].url).map(|a| a.port())
        else {
            return false;
        };
        let Some(info) = probe(port, b"INFO replication\r\nQUIT\r\n") else {
            return false;
        };
        info.contains("role:master") && info.matches("state=online").count() == self.nodes.len() - 1
    }
}

impl crate::robustness::Cluster for RedisSentinelGroup {
    fn leader(&self) -> Option<usize> {
        self.primary()
    }

    fn may_lose_a_member(&self) -> bool {
        self.in_sync()
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

/// PEM files of a throwaway certificate authority, a server certificate for `127.0.0.1` and
/// `localhost`, and a client certificate, all signed by that authority.
pub struct TestCertificates {
    /// The authority's certificate.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate (for mutual TLS).
    pub client_cert: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
}

impl TestCertificates {
    /// The client's side as PEM bytes read from the files (the CA to trust and the client
    /// identity), for the backends' typed options.
    pub fn client_tls(&self) -> Result<kv_core::Tls, String> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let key = String::from_utf8(read(&self.client_key)?).map_err(|e| e.to_string())?;
        Ok(kv_core::Tls::new()
            .ca_pem(read(&self.ca)?)
            .identity_pem(read(&self.client_cert)?, key))
    }
}

/// Writes fresh [`TestCertificates`] into `dir`.
pub fn test_certificates(dir: &Path) -> Result<TestCertificates, String> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let failed = |e: rcgen::Error| format!("cannot make test certificates: {e}");
    let write = |name: &str, pem: String| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose subject equals its issuer's looks self-signed to OpenSSL.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kv test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(failed)?)
        .map_err(failed)?;
    let leaf = |names: Vec<String>| -> Result<(String, String), String> {
        let key = KeyPair::generate().map_err(failed)?;
        let cert = CertificateParams::new(names)
            .map_err(failed)?
            .signed_by(&key, &ca)
            .map_err(failed)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()])?;
    let (client_cert, client_key) = leaf(vec!["kv-test-client".into()])?;
    Ok(TestCertificates {
        ca: write("ca.pem", ca.pem())?,
        server_cert: write("server.pem", server_cert)?,
        server_key: write("server-key.pem", server_key)?,
        client_cert: write("client.pem", client_cert)?,
        client_key: write("client-key.pem", client_key)?,
    })
}

/// Consul 1.8 in `-dev` mode (the binary `scripts/fetch-consul` provides), every port free and on
/// 127.0.0.1, with a 1 s minimum session TTL so TTL tests do not take 10 s.
pub struct ConsulProcess;

impl Launcher for ConsulProcess {
    fn kind(&self) -> &'static str {
        "consul"
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
            ready("consul", http) && registered()
        })?;
        Ok(Server::controlled(
            format!("consul://127.0.0.1:{http}"),
            lifeline,
            "consul",
            http,
            dir,
        ))
    }
}

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
    /// [`FaultProxy`](crate::faults::FaultProxy)s per member, one for its quorum port and one
    /// for its election port (member `i` is reached by its peers at `proxies[i]`): holding
    /// them cuts every connection its peers open to it, a partition between members that
    /// clients do not see. Each member's own line in its configuration names the ports it
    /// binds; the others' name their proxies.
    pub async fn start_with_peer_proxies(
        size: usize,
    ) -> Result<(ZooKeeperEnsemble, Vec<Vec<crate::faults::FaultProxy>>), String> {
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
                ready("zookeeper-member", client)
            })?;
            members.push(Server::controlled(
                format!("zookeeper://127.0.0.1:{client}"),
                lifeline,
                "zookeeper-member",
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
            crate::faults::server_addr(&member.url)
                .and_then(|addr| probe(addr.port(), b"srvr"))
                .is_some_and(|r| r.contains("Mode: leader"))
        })
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
                || ready_at("consul", http) && nodes(size + 1),
            )?;
            members.push(Server::controlled_at(
                format!("consul://{http}"),
                lifeline,
                "consul",
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
                let http = crate::faults::server_addr(&server.url)?;
                let answer = probe_at(http, b"GET /v1/status/leader HTTP/1.0\r\n\r\n")?;
                Some(answer.split("\r\n\r\n").nth(1)?.trim().to_owned())
            })
            .collect()
    }

    /// The index of the server that leads now, if one does (from the agent's view).
    pub fn leader(&self) -> Option<usize> {
        let port = crate::faults::server_addr(&self.agent.url)?.port();
        let answer = probe(port, b"GET /v1/status/leader HTTP/1.0\r\n\r\n")?;
        let leader = answer
            .split("\r\n\r\n")
            .nth(1)?
            .trim()
            .trim_matches('"')
            .to_owned();
        self.servers.iter().position(|server| {
            let http = crate::faults::server_addr(&server.url);
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

/// ZooKeeper 3.8 from `libzookeeper-java` on the default JRE, standalone, with TTL nodes on and
/// expired ones reaped every 500 ms.
pub struct ZooKeeperProcess;

impl Launcher for ZooKeeperProcess {
    fn kind(&self) -> &'static str {
        "zookeeper"
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
            ready("zookeeper", port)
        })?;
        Ok(Server::controlled(
            format!("zookeeper://127.0.0.1:{port}"),
            lifeline,
            "zookeeper",
            port,
            dir,
        ))
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    #[test]
    fn a_port_is_never_given_twice() {
        // 2,000 draws from the kernel's ~28,000 ephemeral ports repeat one almost surely.
        let ports: Vec<u16> = (0..2000).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn a_port_clash_is_retried_with_new_ports_then_given_up() {
        let mut calls = 0;
        let started = with_port_retries(|| {
            calls += 1;
            match calls {
                1 => Err("bind: Address already in use".to_owned()),
                _ => Ok(calls),
            }
        });
        assert_eq!(started, Ok(2));
        let mut calls = 0;
        let failed: Result<(), String> = with_port_retries(|| {
            calls += 1;
            Err("listen tcp 127.0.0.1:1: bind: address already in use".to_owned())
        });
        assert!(failed.is_err());
        assert_eq!(calls, 3);
        let mut calls = 0;
        let other: Result<(), String> = with_port_retries(|| {
            calls += 1;
            Err("not installed".to_owned())
        });
        assert!(other.is_err());
        assert_eq!(calls, 1, "other failures are not retried");
    }
}
