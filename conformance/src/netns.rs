//! Network namespaces, for partitions a proxy cannot make: Consul advertises one address and
//! port per server, for binding and for its peers alike, so nothing can sit between two
//! servers on one loopback. Here each member runs in a namespace of its own (`ip netns exec`),
//! linked by a veth pair to a bridge in the test's namespace; cutting a member sets its link
//! down, which drops every packet to and from it (peers' and clients' alike) with connections
//! left hanging, as in a real partition. Everything is created by the test and removed when
//! the [`Network`] drops (root and iproute2's `ip` needed); what a test process killed before
//! that left behind is removed by the next one (namespaces are named after their process).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// One bridge and a namespace per member, on `10.213.<k>.0/24`: the bridge is `.1`, member
/// `i` is `.(10 + i)`.
pub struct Network {
    id: u32,
    members: Vec<Link>,
}

/// A member's namespace and its link to the bridge.
pub struct Link {
    namespace: String,
    veth: String,
    address: Ipv4Addr,
}

/// Runs `ip ARGS`; its stderr as the error.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Network {
    /// A bridge and `size` namespaces linked to it, each with its address up.
    pub fn create(size: usize) -> Result<Network, String> {
        remove_stale();
        let mut last = String::new();
        // A subnet no other test process (or a leftover of a killed one) holds.
        for _ in 0..20 {
            let id = (std::process::id().wrapping_mul(7) + NEXT.fetch_add(1, Ordering::SeqCst))
                % 240
                + 10;
            match Network::create_as(id, size) {
                Ok(network) => return Ok(network),
                Err(e) => last = e,
            }
        }
        Err(format!("no network namespace could be made: {last}"))
    }

    fn create_as(id: u32, size: usize) -> Result<Network, String> {
        let bridge = format!("kvbr{id}");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        let mut network = Network {
            id,
            members: Vec::new(),
        };
        ip(&["addr", "add", &format!("10.213.{id}.1/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..size {
            let link = Link {
                namespace: format!("kvns{}-{id}-{i}", std::process::id()),
                veth: format!("kvv{id}-{i}"),
                address: Ipv4Addr::new(10, 213, id as u8, 10 + i as u8),
            };
            ip(&["netns", "add", &link.namespace])?;
            network.members.push(link);
            let link = &network.members[i];
            ip(&[
                "link",
                "add",
                &link.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &link.namespace,
            ])?;
            ip(&["link", "set", &link.veth, "master", &bridge, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &link.namespace, "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            inside(&["link", "set", "lo", "up"])?;
            inside(&[
                "addr",
                "add",
                &format!("{}/24", link.address),
                "dev",
                "eth0",
            ])?;
            inside(&["link", "set", "eth0", "up"])?;
        }
        Ok(network)
    }

    /// The bridge's address: where a process in the test's namespace is reached by members.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.id as u8, 1)
    }

    /// The members' links, in order.
    pub fn members(&self) -> &[Link] {
        &self.members
    }
}

impl Link {
    /// The member's address.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The command prefix that runs a program in the member's namespace.
    pub fn exec(&self) -> [String; 3] {
        ["netns".into(), "exec".into(), self.namespace.clone()]
    }

    /// Cuts the member off: its link goes down (packets dropped, connections left open).
    pub fn cut(&self) {
        if let Err(e) = ip(&["link", "set", &self.veth, "down"]) {
            panic!("cannot cut {}: {e}", self.namespace);
        }
    }

    /// Links the member again.
    pub fn heal(&self) {
        if let Err(e) = ip(&["link", "set", &self.veth, "up"]) {
            panic!("cannot heal {}: {e}", self.namespace);
        }
    }
}

/// Removes the namespaces (and their links and bridge) of test processes that are gone.
fn remove_stale() {
    let Ok(listed) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.strip_prefix("kvns").unwrap_or("").split('-');
        let (Some(pid), Some(id), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = ip(&["netns", "del", name]);
        let _ = ip(&["link", "del", &format!("kvv{id}-{i}")]);
        let _ = ip(&["link", "del", &format!("kvbr{id}")]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for link in &self.members {
            let _ = ip(&["netns", "del", &link.namespace]);
            let _ = ip(&["link", "del", &link.veth]);
        }
        let _ = ip(&["link", "del", &format!("kvbr{}", self.id)]);
    }
}
