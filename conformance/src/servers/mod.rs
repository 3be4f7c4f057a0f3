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

mod consul;
#[cfg(feature = "testcontainers")]
pub mod containers;
mod etcd;
mod redis;
mod tls;
mod zookeeper;

pub use consul::{ConsulCluster, ConsulProcess};
pub use etcd::{EtcdCluster, EtcdProcess};
pub use redis::{DurableRedisProcess, RedisProcess, RedisSentinelGroup, SENTINEL_SERVICE};
pub use tls::{TestCertificates, test_certificates};
pub use zookeeper::{ZooKeeperEnsemble, ZooKeeperProcess};

// The readiness checks, for the container launcher (the same check in both modes).
#[cfg(feature = "testcontainers")]
pub(crate) use {
    consul::READY as CONSUL_READY, etcd::READY as ETCD_READY, redis::READY as REDIS_READY,
    zookeeper::READY as ZOOKEEPER_READY,
};

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
    /// For a process this crate started: how to tell it serves, its address and directory.
    process: Option<(Readiness, SocketAddr, PathBuf)>,
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
    /// `ready` tells when it serves on 127.0.0.1:`port` again, `dir` holds its log.
    pub fn controlled(
        url: impl Into<String>,
        lifeline: ChildStdin,
        ready: Readiness,
        port: u16,
        dir: PathBuf,
    ) -> Server {
        Server::controlled_at(url, lifeline, ready, loopback(port), dir)
    }

    /// [`Server::controlled`] for a server that listens on `address` (in a network namespace
    /// of the test's, [`crate::netns`]).
    pub fn controlled_at(
        url: impl Into<String>,
        lifeline: ChildStdin,
        ready: Readiness,
        address: SocketAddr,
        dir: PathBuf,
    ) -> Server {
        Server {
            url: url.into(),
            lifeline: Some(Mutex::new(lifeline)),
            process: Some((ready, address, dir)),
        }
    }

    fn command(&self, command: &str) -> Result<&(Readiness, SocketAddr, PathBuf), String> {
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
        let (ready, address, dir) = self.command("start")?;
        wait_ready(ready.kind, dir, Duration::from_secs(60), || {
            ready.at(*address)
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
    /// True once a server of this kind on `address` serves: the same check for a process and
    /// for a container. By default: it accepts connections.
    fn ready(&self, address: SocketAddr) -> bool {
        connects(address)
    }
}

/// How to tell that a server of one kind serves, as its launcher checks it (kept by a
/// controlled [`Server`] to wait for it after a restart).
#[derive(Clone, Copy)]
pub struct Readiness {
    /// The kind, for messages.
    pub kind: &'static str,
    /// The check, on the server's address.
    pub check: fn(SocketAddr) -> bool,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Readiness({})", self.kind)
    }
}

/// Two checks are the same if they are of the same kind.
impl PartialEq for Readiness {
    fn eq(&self, other: &Readiness) -> bool {
        self.kind == other.kind
    }
}

impl Eq for Readiness {}

impl Readiness {
    /// True once the server on `address` serves.
    pub fn at(&self, address: SocketAddr) -> bool {
        (self.check)(address)
    }

    /// True once the server on 127.0.0.1:`port` serves.
    pub fn on(&self, port: u16) -> bool {
        self.at(loopback(port))
    }
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
    let spec = containers::ContainerSpec::of(kind)
        .ok_or_else(|| format!("no container spec for {kind}"))?;
    containers::ContainerLauncher(spec).start()
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
) -> Result<(T, Vec<Vec<crate::proxy::FaultProxy>>), String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut members = MemberPorts::for_members(size, proxied)?;
        let mut proxies = Vec::with_capacity(size);
        for ports in &mut members {
            let mut own = Vec::new();
            for (port, reached) in ports.bound.iter().zip(&mut ports.reached) {
                let target = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
                let proxy = crate::proxy::FaultProxy::start(target)
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
