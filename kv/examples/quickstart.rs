//! The quickstart: put, get, list, watch, CAS, TTL and a lock on the embedded default.
//!
//! ```text
//! cargo run -p coordkv --example quickstart            # memory://
//! cargo run -p coordkv --example quickstart -- URL     # any store kv was built for
//! ```

use std::time::Duration;

use futures::StreamExt;
use kv::{LockOptions, Precondition, PutOptions, WatchOptions};

#[tokio::main]
async fn main() -> kv::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://".into());
    let store = kv::open(&url).await?;
    println!("opened {url} ({} backend)", store.capabilities().backend);

    // Watch a directory before writing to it: first the current state, then live changes.
    let mut events = store
        .watch_tree("app/config", WatchOptions::default())
        .await?;

    let version = store
        .put("app/config/color", b"blue", PutOptions::default())
        .await?;
    store
        .put("app/config/size", b"XL", PutOptions::default())
        .await?;
    let pair = store.get("app/config/color").await?.expect("just written");
    println!(
        "get  {} = {:?} (version {})",
        pair.key, pair.value, pair.version
    );

    for pair in store.list("app").await? {
        println!("list {} = {:?}", pair.key, pair.value);
    }

    // Compare-and-swap: only succeeds against the version we read.
    store
        .atomic_put(
            "app/config/color",
            b"green",
            Precondition::Version(version),
            PutOptions::default(),
        )
        .await?;
    let stale = store
        .atomic_put(
            "app/config/color",
            b"red",
            Precondition::Version(version),
            PutOptions::default(),
        )
        .await;
    println!(
        "cas with a stale version: {}",
        stale.expect_err("stale version")
    );

    // A key with a TTL disappears by itself, with a Delete event.
    store
        .put(
            "app/config/session",
            b"temp",
            PutOptions::default().ttl(Duration::from_millis(200)),
        )
        .await?;

    for _ in 0..5 {
        let event = events
            .next()
            .await
            .expect("watch streams end only with an error")?;
        println!(
            "watch {:?} {} = {:?} (version {})",
            event.kind, event.key, event.value, event.version
        );
    }

    // A lock with a lease, renewed in the background while the guard lives.
    let lock = store
        .new_lock(
            "app/leader",
            LockOptions::default().value(&b"quickstart"[..]),
        )
        .await?;
    let guard = lock.acquire().await?;
    let holder = lock.holder().await?.expect("we hold it");
    println!(
        "lock app/leader held by {:?} with fencing token {}",
        holder.value,
        guard.fencing_token()
    );
    guard.release().await?;
    store.close().await
}
