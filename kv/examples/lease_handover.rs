//! A store configured in code (no URL) and a lease handed over by its ID: one handle grants a
//! lease and registers a key with it, then stops renewing; another handle — in real life
//! another process, as `kvctl lease keepalive ID` is — takes the lease up by its ID and keeps
//! the key alive past the TTL, then revokes it.
//!
//! ```text
//! cargo run -p coordkv --features sqlite --example lease_handover
//! ```

use std::time::Duration;

use kv::sqlite::SqliteOptions;
use kv::{PutOptions, Store};

const KEY: &str = "services/api/node-1";
const TTL: Duration = Duration::from_secs(2);

#[tokio::main(flavor = "current_thread")]
async fn main() -> kv::Result<()> {
    let dir = std::env::temp_dir().join(format!("kv-lease-handover-{}", std::process::id()));
    // Typed options instead of `sqlite:///...?busy_timeout=2s`.
    let options = SqliteOptions::new(dir.join("kv.db")).busy_timeout(Duration::from_secs(2));
    let outcome = handover(&options).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn handover(options: &SqliteOptions) -> kv::Result<()> {
    let granter = options.clone().open().await?;
    let lease = granter.grant(TTL).await?;
    granter
        .put(KEY, b"10.0.0.1:8080", PutOptions::default().lease(&lease))
        .await?;
    let id = lease.id().to_owned();
    println!("granted lease {id} ({TTL:?}) and registered {KEY}");
    // The granter stops renewing (every clone dropped) without revoking.
    drop(lease);

    let keeper = options.clone().open().await?;
    let kept = keeper.attach_lease(&id).await?;
    println!("another handle took lease {id} up");
    tokio::time::sleep(TTL * 2).await;
    assert!(
        keeper.exists(KEY).await?,
        "renewed by the keeper, the key outlives the TTL"
    );
    println!("{KEY} is still registered after {:?}", TTL * 2);

    kept.revoke().await?;
    assert!(
        !granter.exists(KEY).await?,
        "a revoke deletes the lease's keys at once"
    );
    println!("revoked: {KEY} is gone");
    granter.close().await?;
    keeper.close().await
}
