//! A whole service on the recipes: it registers itself, follows its typed config from the
//! current state, takes part in an election and runs its job only while it leads — each write
//! fenced by its term — and heals after an outage without a retry loop of its own. Ctrl-C (or
//! the seconds given) stops it: it resigns and leaves the registry at once.
//!
//! ```text
//! cargo run -p coordkv --example service                                   # memory://service
//! cargo run -p coordkv --features etcd --example service -- etcd://127.0.0.1:2379/app node-2
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures::StreamExt;
use kv::{CancellationToken, Election, Registration, Store, StoreExt, WatchOptions};

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
    let [ticks, unsure] = run(kv::open(&url).await?, name.clone(), seconds).await?;
    println!("{name} wrote {ticks} ticks ({unsure} more may have landed)");
    Ok(())
}

/// Runs instance `name` until Ctrl-C or `secs` seconds: the ticks it wrote as leader, and those
/// whose outcome it could not know (a write cut off: it may have landed, once).
pub async fn run(store: Arc<dyn Store>, name: String, secs: Option<u64>) -> kv::Result<[u64; 2]> {
    let ttl = Duration::from_secs(5);
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    let wait = secs.map_or(Duration::MAX, Duration::from_secs);
    tokio::spawn(async move {
        tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = tokio::signal::ctrl_c() => {} }
        cancel.cancel();
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
                follow.store(config.tick_ms, Relaxed);
            }
        }
    });
    // The job, only while leading; a write from a term that ended is refused.
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]); // written, unsure
    let election = Election::new(store.clone(), "services/api/leader")?.ttl(ttl);
    election
        .run(name.clone(), stop, |term| {
            let (store, tick_ms, counts) = (store.clone(), tick_ms.clone(), counts.clone());
            async move {
                loop {
                    let fences = [term.fence()];
                    let written = store.update_fenced("services/api/ticks", &fences, |n| {
                        let n: Option<u64> =
                            n.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                        Ok((n.unwrap_or(0) + 1).to_string().into_bytes())
                    });
                    match written.await {
                        Ok(_) => counts[0].fetch_add(1, Relaxed),
                        Err(e) if e.is_outcome_unknown() => counts[1].fetch_add(1, Relaxed),
                        Err(_) => 0, // refused: nothing written (no longer leading, a conflict)
                    };
                    tokio::time::sleep(Duration::from_millis(tick_ms.load(Relaxed))).await;
                }
            }
        })
        .await?;
    registration.stop().await;
    Ok(counts.each_ref().map(|c| c.load(Relaxed)))
}
