//! The servers' own command-line tools, for interop tests that put them on the other side of
//! kv: `etcdctl`, `consul kv`, `redis-cli` and ZooKeeper's Java CLI. A tool that is missing or
//! fails is a loud test failure with its output, never a skip.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use kv_core::{EventKind, KvPair, WatchStream};

use crate::servers::find_binary;

/// An event as the interop tests compare them: kind, key, value.
pub type Seen = (EventKind, String, Vec<u8>);

/// The keys of listed pairs.
pub fn keys(pairs: &[KvPair]) -> Vec<String> {
    pairs.iter().map(|p| p.key.to_string()).collect()
}

/// Reads a watch until `done` holds for the events read so far; panics if it fails, ends, or
/// stays quiet for 10 s.
pub async fn events_until(watch: &mut WatchStream, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
    let mut seen = Vec::new();
    while !done(&seen) {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap_or_else(|_| panic!("the watch went quiet after {seen:?}"))
            .unwrap_or_else(|| panic!("the watch ended after {seen:?}"))
            .unwrap_or_else(|e| panic!("the watch failed after {seen:?}: {e}"));
        seen.push((event.kind, event.key.to_string(), event.value.to_vec()));
    }
    seen
}

/// True if `seen` holds an event of this kind on this key.
pub fn saw(seen: &[Seen], kind: EventKind, key: &str) -> bool {
    seen.iter().any(|(k, name, _)| *k == kind && name == key)
}

/// Runs `program args` (found on `PATH`, else `install` says how to get it), feeding `stdin`;
/// returns its standard output. Panics with the tool's output if it cannot run or fails.
pub fn run(program: &str, install: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let binary = find_binary(program, install).unwrap_or_else(|e| panic!("{e}"));
    run_binary(&binary, args, stdin)
}

fn run_binary(binary: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let shown = format!("{} {}", binary.display(), args.join(" "));
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}"));
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin)
            .unwrap_or_else(|e| panic!("cannot feed `{shown}`: {e}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("`{shown}` did not finish: {e}"));
    assert!(
        output.status.success(),
        "`{shown}` failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `host:port` of a server URL the harness gave (`scheme://host:port[/...]`).
pub fn address(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// `etcdctl args` (API v3) against the etcd server at `url`; returns standard output.
pub fn etcdctl(url: &str, args: &[&str]) -> Vec<u8> {
    let endpoints = format!("--endpoints=http://{}", address(url));
    let mut all = vec![endpoints.as_str()];
    all.extend_from_slice(args);
    run("etcdctl", "apt-get install etcd-client", &all, b"")
}

/// `consul args` with `-http-addr` of the agent at `url` added after the subcommand
/// (`consul(url, &["kv", "put"], &["app/x", "1"])`); returns standard output.
pub fn consul(url: &str, command: &[&str], args: &[&str]) -> Vec<u8> {
    let http = format!("-http-addr=http://{}", address(url));
    let mut all = command.to_vec();
    all.push(&http);
    all.extend_from_slice(args);
    run(
        "consul",
        "scripts/fetch-consul (bullseye's consul 1.8.7)",
        &all,
        b"",
    )
}

/// `redis-cli args` against the Redis server at `url`, raw output; returns standard output.
pub fn redis_cli(url: &str, args: &[&str]) -> Vec<u8> {
    let address = address(url);
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "6379"));
    let mut all = vec!["--no-raw", "-h", host, "-p", port];
    all.extend_from_slice(args);
    run("redis-cli", "apt-get install redis-tools", &all, b"")
}

/// Runs one command of ZooKeeper's own Java CLI (`ZooKeeperMain`, from `libzookeeper-java`)
/// against the server at `url` (`zk_cli(url, &["get", "/kv/a"])`); returns its output.
pub fn zk_cli(url: &str, command: &[&str]) -> String {
    let java = find_binary("java", "apt-get install default-jre-headless")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut args = vec![
        "-cp",
        "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=error",
        "org.apache.zookeeper.ZooKeeperMain",
        "-server",
        address(url),
    ];
    args.extend_from_slice(command);
    String::from_utf8_lossy(&run_binary(&java, &args, b"")).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses() {
        assert_eq!(
            super::address("etcd://127.0.0.1:2379/root"),
            "127.0.0.1:2379"
        );
        assert_eq!(super::address("consul://h:1?x=y"), "h:1");
        assert_eq!(super::address("h:2"), "h:2");
    }
}
