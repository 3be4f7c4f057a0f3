//! A service registry on any backend: instances register themselves with a lease (their key
//! goes when they stop renewing), a watcher loads the registry ("initial state complete") and
//! follows it, the instances elect a leader, and the leader updates a JSON config with a
//! compare-and-swap loop. The first leader then shuts down; the second takes over.
//!
//! ```text
//! cargo run -p coordkv --example service_registry                  # memory://registry
//! cargo run -p coordkv --features etcd --example service_registry -- etcd://127.0.0.1:2379/app
//! ```
//!
//! `kv/tests/examples.rs` runs it against memory and a real etcd server.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kv::{Election, EventKind, Leadership, Lease, PutOptions, Store, StoreExt, WatchOptions};

const INSTANCES: &str = "services/api/instances";
const LEADER: &str = "services/api/leader";
const CONFIG: &str = "config/api";
/// How long a crashed instance stays registered (and a crashed leader keeps the office).
const TTL: Duration = Duration::from_secs(5);

/// The config the leader owns.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Who wrote it last.
    pub leader: String,
    /// How many leaders have written it.
    pub epoch: u32,
}

/// One running instance: its handle, its registration lease, and its leadership once elected.
struct Instance {
    name: &'static str,
    store: Arc<dyn Store>,
    lease: Lease,
}

impl Instance {
    /// Opens a handle and registers `name` at `addr`, bound to a lease.
    async fn start(url: &str, name: &'static str, addr: &str) -> kv::Result<Instance> {
        let store = kv::open(url).await?;
        let lease = store.grant(TTL).await?;
        let key = format!("{INSTANCES}/{name}");
        store
            .put(&key, addr.as_bytes(), PutOptions::default().lease(&lease))
            .await?;
        Ok(Instance { name, store, lease })
    }

    /// Waits to be elected, then writes the config as its leader.
    async fn lead(&self) -> kv::Result<Leadership> {
        let election = Election::new(self.store.clone(), LEADER)?.ttl(TTL);
        let leadership = election.campaign(self.name).await?;
        let name = self.name.to_owned();
        self.store
            .update_json(CONFIG, move |config: Option<Config>| {
                let epoch = config.map_or(0, |c| c.epoch) + 1;
                Config {
                    leader: name.clone(),
                    epoch,
                }
            })
            .await?;
        Ok(leadership)
    }

    /// Shuts down cleanly: leaves the office and the registry at once.
    async fn stop(self, leadership: Leadership) -> kv::Result<()> {
        leadership.resign().await?;
        self.lease.revoke().await?;
        self.store.close().await
    }
}

/// What the registry watcher saw, in order: `+name` / `-name`, and `synced` once the initial
/// state was complete.
async fn next_change(events: &mut kv::WatchStream) -> kv::Result<String> {
    let event = match tokio::time::timeout(Duration::from_secs(15), events.next()).await {
        Ok(Some(event)) => event?,
        Ok(None) => return Err(kv::Error::unavailable("the watch ended", None)),
        Err(_) => {
            return Err(kv::Error::unavailable(
                "no registry change within 15 s",
                None,
            ));
        }
    };
    let name = event.key.name().to_owned();
    Ok(match event.kind {
        EventKind::Put => format!("+{name}"),
        EventKind::Delete => format!("-{name}"),
        EventKind::Synced => "synced".to_owned(),
    })
}

/// Runs the scenario on the store at `url`; returns what the registry watcher saw.
pub async fn run(url: &str) -> kv::Result<Vec<String>> {
    let admin = kv::open(url).await?;
    let mut registry = admin
        .watch_tree(INSTANCES, WatchOptions::default().synced())
        .await?;
    let mut seen = vec![next_change(&mut registry).await?];
    println!("registry loaded ({})", seen[0]);

    let a = Instance::start(url, "a", "10.0.0.1:8080").await?;
    let a_leads = a.lead().await?;
    println!("a registered and leads (version {})", a_leads.version());
    let b = Instance::start(url, "b", "10.0.0.2:8080").await?;
    let b = Arc::new(b);
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { b.lead().await })
    };
    seen.push(next_change(&mut registry).await?);
    seen.push(next_change(&mut registry).await?);
    println!("registry: {seen:?}");

    a.stop(a_leads).await?;
    seen.push(next_change(&mut registry).await?);
    let b_leads = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .map_err(|_| kv::Error::unavailable("b was not elected within 15 s", None))?
        .map_err(|e| kv::Error::Backend(Box::new(e)))??;
    let (config, _) = admin.get_json::<Config>(CONFIG).await?.unwrap_or_default();
    println!("a stopped; b leads; config {config:?}; registry: {seen:?}");
    if config
        != (Config {
            leader: "b".into(),
            epoch: 2,
        })
    {
        return Err(kv::Error::unavailable(
            format!("the config is {config:?}, expected b's second epoch"),
            None,
        ));
    }
    b_leads.resign().await?;
    b.lease.revoke().await?;
    admin.delete(CONFIG).await?;
    admin.close().await?;
    Ok(seen)
}

#[tokio::main]
async fn main() -> kv::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://registry".into());
    run(&url).await.map(drop)
}
