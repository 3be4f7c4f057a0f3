//! A whole service on the recipes: it registers itself, follows its typed config from the
//! current state, takes part in an election and runs its job only while it leads — each write
//! fenced by its term — and heals after an outage without a retry loop of its own. Ctrl-C (or
//! the seconds given) stops it: it resigns and leaves the registry at once.
//!
//! ```text
//! cargo run -p coordkv --example service                                   # memory://service
//! cargo run -p coordkv --features etcd --example service -- etcd://127.0.0.1:2379/app node-2
//! ```

use std::sync::{Arc, atomic::AtomicU64, atomic::Ordering};
use std::time::Duration;

use futures::StreamExt;
use kv::{CancellationToken, Election, Registration, StoreExt, WatchOptions};

/// The config every instance follows.
#[derive(Debug, serde::Deserialize)]
struct Config {
    /// How often the leader ticks.
    tick_ms: u64,
}

#[tokio::main]
async fn main() -> kv::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "memory://service".into());
    let name = args.next().unwrap_or_else(|| "node-1".into());
    let seconds = args.next().and_then(|s| s.parse().ok());
    let ticks = run(kv::open(&url).await?, name.clone(), seconds).await?;
    println!("{name} wrote {ticks} ticks");
    Ok(())
}

/// Runs instance `name` until Ctrl-C or `seconds`; returns the ticks it wrote as leader.
pub async fn run(store: Arc<dyn kv::Store>, name: String, seconds: Option<u64>) -> kv::Result<u64> {
    let ttl = Duration::from_secs(5);
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            match seconds {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
                None => drop(tokio::signal::ctrl_c().await),
            }
            stop.cancel();
        }
    });
    // In the registry for as long as it runs, again after every outage.
    let key = format!("services/api/instances/{name}");
    let registration = Registration::start(store.clone(), &key, name.clone(), ttl)?;
    // The config, from its current state, decoded.
    let tick_ms = Arc::new(AtomicU64::new(200));
    let mut configs = store
        .watch_json::<Config>("config/api", false, WatchOptions::default())
        .await?;
    let follow = tick_ms.clone();
    tokio::spawn(async move {
        while let Some(Ok(event)) = configs.next().await {
            if let Some(config) = event.value {
                follow.store(config.tick_ms, Ordering::Relaxed);
            }
        }
    });
    // The job, only while leading; a write from a term that ended is refused.
    let ticks = Arc::new(AtomicU64::new(0));
    let election = Election::new(store.clone(), "services/api/leader")?.ttl(ttl);
    election
        .run(name.clone(), stop, |term| {
            let (store, ticks, tick_ms) = (store.clone(), ticks.clone(), tick_ms.clone());
            async move {
                loop {
                    let fences = [term.fence()];
                    let written = store.update_fenced("services/api/ticks", &fences, |n| {
                        let n: Option<u64> =
                            n.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                        Ok((n.unwrap_or(0) + 1).to_string().into_bytes())
                    });
                    if written.await.is_ok() {
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(tick_ms.load(Ordering::Relaxed)))
                        .await;
                }
            }
        })
        .await?;
    registration.stop().await;
    Ok(ticks.load(Ordering::Relaxed))
}
