//! The harness starts every server kind and finds it ready (the backends' suites rely on it).
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use conformance::servers::{
    ConsulProcess, EtcdProcess, Launcher, Provision, RedisProcess, ZooKeeperProcess, probe,
    provision,
};

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn started(launcher: &dyn Launcher) -> Option<String> {
    match provision(launcher) {
        Provision::Ready(server) => Some(server.url.clone()),
        Provision::Skipped(message) => {
            eprintln!("{message}");
            None
        }
    }
}

#[test]
fn etcd_and_redis_start() {
    if let Some(url) = started(&EtcdProcess) {
        assert!(url.starts_with("etcd://127.0.0.1:"), "{url}");
    }
    if let Some(url) = started(&RedisProcess) {
        assert!(
            probe(port_of(&url), b"PING\r\n")
                .unwrap()
                .starts_with("+PONG")
        );
    }
}

#[test]
fn consul_starts_with_a_leader() {
    let Some(url) = started(&ConsulProcess) else {
        return;
    };
    let leader = probe(port_of(&url), b"GET /v1/status/leader HTTP/1.0\r\n\r\n").unwrap();
    assert!(leader.contains("127.0.0.1:"), "{leader}");
    let config = probe(port_of(&url), b"GET /v1/agent/self HTTP/1.0\r\n\r\n").unwrap();
    assert!(
        config.contains("\"SessionTTLMin\":\"1s\"") || config.contains("SessionTTLMin"),
        "{}",
        &config[..config.len().min(400)]
    );
}

#[test]
fn zookeeper_starts_standalone() {
    let Some(url) = started(&ZooKeeperProcess) else {
        return;
    };
    let status = probe(port_of(&url), b"srvr").unwrap();
    assert!(status.contains("Mode: standalone"), "{status}");
}
