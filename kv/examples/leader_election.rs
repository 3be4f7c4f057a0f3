//! Leader election with `kv::Election`: several candidates campaign for `app/leader`; the
//! leader works while it leads — each write fenced by its leadership, so a write from a leader
//! that has since lost the office is refused, even one it sends after a pause it did not notice
//! — stops the moment `lost()` fires, and resigns, which elects the next candidate at once.
//! Anyone can ask who leads with `Election::leader`. (`Election::run` wraps this loop and
//! campaigns again after an outage: see `--example service`.)
//!
//! ```text
//! cargo run -p coordkv --example leader_election                  # memory://demo
//! cargo run -p coordkv --features etcd --example leader_election -- etcd://127.0.0.1:2379/app
//! ```

use std::sync::Arc;
use std::time::Duration;

use kv::{Election, Store, StoreExt};

async fn candidate(store: Arc<dyn Store>, name: &'static str) -> kv::Result<()> {
    let election = Election::new(store.clone(), "app/leader")?.ttl(Duration::from_secs(5));
    let leadership = election.campaign(name).await?;
    let token = leadership.fencing_token();
    println!("{name} leads (fencing token {token})");
    let lost = leadership.lost();
    for round in 0..3 {
        tokio::select! {
            _ = lost.cancelled() => {
                println!("{name} lost the lead; stopping");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        // Lands only while this leadership is in office (the leader key at its version).
        let record = format!("{name} round {round} token {token}");
        store
            .update_fenced("app/state", &[leadership.fence()], |_| {
                Ok(record.clone().into_bytes())
            })
            .await?;
    }
    println!("{name} steps down");
    leadership.resign().await
}

#[tokio::main]
async fn main() -> kv::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://demo".into());
    let store = kv::open(&url).await?;
    let observer = Election::new(store.clone(), "app/leader")?;
    let candidates =
        ["node-a", "node-b", "node-c"].map(|name| tokio::spawn(candidate(store.clone(), name)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Some(leader) = observer.leader().await? {
        println!(
            "observer: the leader is {:?}",
            String::from_utf8_lossy(&leader)
        );
    }
    for candidate in candidates {
        candidate.await.expect("candidate task")?;
    }
    let last = store
        .get("app/state")
        .await?
        .expect("written by the leaders");
    println!("last record: {}", String::from_utf8_lossy(&last.value));
    store.close().await
}
