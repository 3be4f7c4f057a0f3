//! Leader election on a lock: several candidates contend for `app/leader`; the holder works
//! while it leads, stamping its writes with the fencing token, and stops the moment `lost()`
//! fires. Anyone can ask who leads with `Lock::holder`.
//!
//! ```text
//! cargo run -p coordkv --example leader_election                  # memory://demo
//! cargo run -p coordkv --features etcd --example leader_election -- etcd://127.0.0.1:2379/app
//! ```

use std::time::Duration;

use kv::{LockOptions, Precondition, PutOptions, Store};

async fn candidate(store: std::sync::Arc<dyn Store>, name: &'static str) -> kv::Result<()> {
    let lock = store
        .new_lock(
            "app/leader",
            LockOptions::default()
                .ttl(Duration::from_secs(5))
                .value(name),
        )
        .await?;
    let guard = lock.acquire().await?;
    let token = guard.fencing_token();
    println!("{name} leads (fencing token {token})");
    let lost = guard.lost();
    for round in 0..3 {
        tokio::select! {
            _ = lost.cancelled() => {
                println!("{name} lost the lead; stopping");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        // Writes carry the token, so a stale leader's late write can be recognised downstream.
        let record = format!("{name} round {round} token {token}");
        let current = store.get("app/state").await?.map(|p| p.version);
        let precondition = current.map_or(Precondition::MustNotExist, Precondition::Version);
        store
            .atomic_put(
                "app/state",
                record.as_bytes(),
                precondition,
                PutOptions::default(),
            )
            .await?;
    }
    println!("{name} steps down");
    guard.release().await
}

#[tokio::main]
async fn main() -> kv::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://demo".into());
    let store = kv::open(&url).await?;
    let observer = store.new_lock("app/leader", LockOptions::default()).await?;
    let candidates =
        ["node-a", "node-b", "node-c"].map(|name| tokio::spawn(candidate(store.clone(), name)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Some(holder) = observer.holder().await? {
        println!(
            "observer: the leader is {:?}",
            String::from_utf8_lossy(&holder.value)
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
