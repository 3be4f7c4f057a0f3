//! Starts one throwaway server of each networked kind (etcd, Redis, Consul, ZooKeeper) the way
//! the test harness does, prints `KIND URL` for each, and keeps them running until standard
//! input closes. `scripts/bench` uses it; run it by hand to poke at real servers:
//!
//! ```text
//! cargo run -p coordkv-conformance --example servers
//! ```
#![allow(clippy::unwrap_used)]

use std::io::Read;

use conformance::servers::{ConsulProcess, EtcdProcess, Launcher, RedisProcess, ZooKeeperProcess};

fn main() {
    let launchers: [&dyn Launcher; 4] = [
        &EtcdProcess,
        &RedisProcess,
        &ConsulProcess,
        &ZooKeeperProcess,
    ];
    let mut running = Vec::new();
    for launcher in launchers {
        match launcher.start() {
            Ok(server) => {
                println!("{} {}", launcher.kind(), server.url);
                running.push(server);
            }
            Err(reason) => eprintln!("{}: not started: {reason}", launcher.kind()),
        }
    }
    println!("ready");
    // The servers stop when this process exits (their lifelines close).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
