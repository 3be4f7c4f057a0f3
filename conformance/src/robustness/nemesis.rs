//! The nemesis: what it can cut (a member from its peers, a client from the servers), which
//! member leads, and the random schedule of faults it runs.

use super::*;

/// What the nemesis can break.
pub(super) struct Target<'a> {
    /// Servers it can pause, kill and restart.
    pub(super) members: Vec<&'a Server>,
    /// How each member is cut off from its peers (empty: members always reach each
    /// other).
    pub(super) peers: Vec<&'a dyn Partition>,
    /// A proxy per host of the clients' URL.
    pub(super) proxies: Vec<&'a FaultProxy>,
    /// Which member leads, if that can be asked, and when one may be killed.
    pub(super) leader: Option<&'a dyn Cluster>,
}

impl Target<'_> {
    pub(super) fn heal(&self) {
        for proxy in &self.proxies {
            proxy.heal();
        }
        for peers in &self.peers {
            peers.heal();
        }
        for member in &self.members {
            let _ = member.resume();
        }
    }
}

/// `peers` for [`run_cluster`] when no member is ever cut off from its peers.
pub const NO_PEER_CUTS: &[Vec<FaultProxy>] = &[];

/// How the nemesis cuts a member off from its peers, and links it again.
pub trait Partition: Sync {
    /// Cuts it off.
    fn cut(&self);
    /// Links it again.
    fn heal(&self);
}

/// The proxies in front of a member for its peers: held, then healed.
impl Partition for Vec<FaultProxy> {
    fn cut(&self) {
        self.iter().for_each(FaultProxy::hold);
    }
    fn heal(&self) {
        self.iter().for_each(FaultProxy::heal);
    }
}

/// A member in a network namespace of its own: its link down, then up.
impl Partition for crate::netns::Link {
    fn cut(&self) {
        crate::netns::Link::cut(self);
    }
    fn heal(&self) {
        crate::netns::Link::heal(self);
    }
}

/// What the nemesis asks of a cluster: which member leads, and whether one may be killed now.
/// A closure that names the leader is one that always lets a member die.
pub trait Cluster: Sync {
    /// The index of the member that leads now, if one does and that can be asked.
    fn leader(&self) -> Option<usize>;

    /// Whether a member may die now without breaking what the system promises (Redis
    /// Sentinel with `wait_replicas=1` keeps what it acknowledged through one node's death
    /// at a time, once the replicas are back in sync). Kills wait for it (up to 10 s).
    fn may_lose_a_member(&self) -> bool {
        true
    }
}

impl<F: Fn() -> Option<usize> + Sync> Cluster for F {
    fn leader(&self) -> Option<usize> {
        self()
    }
}

/// A Sentinel group leads with its primary; a member may go while every replica is in sync.
impl Cluster for crate::servers::RedisSentinelGroup {
    fn leader(&self) -> Option<usize> {
        self.primary()
    }

    fn may_lose_a_member(&self) -> bool {
        self.in_sync()
    }
}

/// The nemesis on the clients' side alone, for `duration` from now: the connections through
/// `proxies` held (a partition), reset or delayed, one fault at a time with quiet pauses
/// between (as in every robustness run), all healed at the end. For a test of code built on
/// kv (a recipe, an example) under the runner's faults. Returns the log.
pub async fn client_faults(proxies: &[FaultProxy], seed: u64, duration: Duration) -> Vec<Fault> {
    let target = Target {
        members: Vec::new(),
        peers: Vec::new(),
        proxies: proxies.iter().collect(),
        leader: None,
    };
    let config = Config {
        seed,
        ..Config::from_env(duration.as_secs())
    };
    let children = tokio::sync::Mutex::new(Vec::new());
    let began = Instant::now();
    let spawn = |_: usize| -> process::Child { unreachable!("no client processes to replace") };
    let log = run_nemesis(&target, &children, &spawn, &config, began, began + duration).await;
    target.heal();
    log
}

/// Injects faults until `deadline`, one at a time with pauses between, each of a kind the
/// target has: a proxy's connections held (a partition), reset, or delayed; a member paused
/// (SIGSTOP) for about a second, or now and then for longer than the leases' and locks' TTLs;
/// with `config.kills`, a member killed with SIGKILL and restarted on its data; a client
/// process killed (and another started in its place) or, holding the lock, paused past its
/// TTL. Returns the log.
pub(super) async fn run_nemesis(
    target: &Target<'_>,
    children: &tokio::sync::Mutex<Vec<process::Child>>,
    spawn: &dyn Fn(usize) -> process::Child,
    config: &Config,
    began: Instant,
    deadline: Instant,
) -> Vec<Fault> {
    let mut rng = fastrand::Rng::with_seed(config.seed ^ 0x5eed_fa17);
    let mut log = Vec::new();
    let at = || began.elapsed().as_nanos() as u64;
    let mut kinds: Vec<&'static str> = Vec::new();
    if !target.proxies.is_empty() {
        kinds.extend([
            "partition",
            "partition",
            "partition",
            "reset",
            "reset",
            "delay",
            "delay",
        ]);
    }
    if !target.members.is_empty() {
        if config.pauses {
            kinds.extend(["pause", "pause", "long pause"]);
        }
        if config.kills {
            kinds.extend(["kill", "kill"]);
            if !config.pauses {
                // The kills take the pauses' share.
                kinds.extend(["kill", "kill", "kill"]);
            }
        }
    }
    if !target.peers.is_empty() {
        kinds.extend(["member partition", "member partition"]);
    }
    {
        let children = children.lock().await;
        if children.iter().any(|c| c.role == "traffic") {
            kinds.push("client kill");
        }
        if children.iter().any(|c| c.role == "lock") {
            kinds.push("client pause");
        }
    }
    let mut next_client = 350;
    while !kinds.is_empty() {
        let quiet = Duration::from_millis(rng.u64(500..1500));
        if Instant::now() + quiet + Duration::from_millis(1500) >= deadline {
            break;
        }
        tokio::time::sleep(quiet).await;
        let length = Duration::from_millis(rng.u64(300..1300));
        let start = at();
        let proxy = target
            .proxies
            .get(rng.usize(0..target.proxies.len().max(1)));
        let leader = match target.leader {
            Some(cluster) if rng.bool() => tokio::task::block_in_place(|| cluster.leader()),
            _ => None,
        };
        let member = leader.unwrap_or_else(|| rng.usize(0..target.members.len().max(1)));
        let server = target.members.get(member);
        let peers = target.peers.get(member);
        let named = |member: &'static str, leading: &'static str| match leader {
            Some(_) => leading,
            None => member,
        };
        let kind = match (kinds[rng.usize(0..kinds.len())], proxy, server) {
            ("partition", Some(proxy), _) => {
                proxy.hold();
                tokio::time::sleep(length).await;
                proxy.heal();
                "partition"
            }
            ("reset", Some(proxy), _) => {
                proxy.drop_connections();
                "reset"
            }
            ("delay", Some(proxy), _) => {
                proxy.delay(Duration::from_millis(rng.u64(20..200)));
                tokio::time::sleep(length).await;
                proxy.heal();
                "delay"
            }
            (kind @ ("pause" | "long pause"), _, Some(server)) => {
                let length = if kind == "long pause" {
                    Duration::from_millis(rng.u64(3000..4000))
                } else {
                    length
                };
                if server.pause().is_err() {
                    continue;
                }
                tokio::time::sleep(length).await;
                let _ = server.resume();
                match kind {
                    "long pause" => named("long pause", "leader long pause"),
                    _ => named("pause", "leader pause"),
                }
            }
            ("kill", _, Some(server)) => {
                if let Some(cluster) = target.leader {
                    let until = Instant::now() + Duration::from_secs(10);
                    let ready = loop {
                        if tokio::task::block_in_place(|| cluster.may_lose_a_member()) {
                            break true;
                        }
                        if Instant::now() > until {
                            break false;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    };
                    if !ready {
                        continue;
                    }
                }
                let killed = tokio::task::block_in_place(|| server.kill9());
                tokio::time::sleep(Duration::from_millis(rng.u64(config.down_ms.clone()))).await;
                let restarted = tokio::task::block_in_place(|| server.restart());
                if let Err(e) = killed.and(restarted) {
                    panic!("the nemesis could not kill and restart the server: {e}");
                }
                named("kill", "leader kill")
            }
            ("member partition", _, _) => {
                let Some(peers) = peers else { continue };
                peers.cut();
                tokio::time::sleep(Duration::from_millis(rng.u64(1000..3000))).await;
                peers.heal();
                named("member partition", "leader partition")
            }
            ("client kill", _, _) => {
                let mut children = children.lock().await;
                let traffic: Vec<usize> = (0..children.len())
                    .filter(|&i| children[i].role == "traffic")
                    .collect();
                let victim = children.remove(traffic[rng.usize(0..traffic.len())]);
                victim.kill().await;
                children.push(spawn(next_client));
                next_client += 1;
                "client kill"
            }
            ("client pause", _, _) => {
                let children = children.lock().await;
                let Some(holder) = children.iter().find(|c| c.role == "lock") else {
                    continue;
                };
                holder.pause(true);
                // Past the lock's TTL (2 s; ZooKeeper's session timeout, up to 6 s): it must find itself
                // lost when it wakes.
                tokio::time::sleep(Duration::from_millis(rng.u64(2500..7000))).await;
                holder.pause(false);
                "client pause"
            }
            _ => continue,
        };
        log.push(Fault {
            kind,
            start,
            end: at(),
        });
    }
    tokio::time::sleep_until(deadline.into()).await;
    log
}
