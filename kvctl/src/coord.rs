//! `kvctl lease` and `kvctl elect`: keys bound to a lease, and leader election, held while a
//! command runs (or until a signal).

use std::sync::Arc;

use futures::StreamExt;
use kv::{Election, PutOptions, Store};
use serde_json::json;

use crate::cli::{ElectArgs, LeaseArgs};
use crate::lock::{Held, hold};
use crate::output::{Failure, Printer, code};

/// Puts the keys with a lease, holds it, revokes it.
pub async fn lease(store: &dyn Store, args: LeaseArgs) -> Result<u8, Failure> {
    let pairs = args
        .keys
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .ok_or_else(|| Failure::new(code::USAGE, format!("`{pair}` is not KEY=VALUE")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let lease = store.grant(args.ttl).await?;
    for (key, value) in &pairs {
        let put = store
            .put(key, value.as_bytes(), PutOptions::default().lease(&lease))
            .await;
        if let Err(error) = put {
            let _ = lease.revoke().await;
            return Err(Failure::write(error));
        }
    }
    eprintln!(
        "kvctl: holding {} keys with lease {} (TTL {:?})",
        pairs.len(),
        lease.id(),
        lease.ttl()
    );
    let env = [("KV_LEASE_ID", lease.id().to_owned())];
    match hold(&args.command, &env, lease.lost()).await? {
        Held::Exited(status) => {
            lease.revoke().await?;
            Ok(status)
        }
        Held::Lost(what) => Err(Failure::new(
            code::LOCK_LOST,
            format!("lease {} was lost {what}; its keys may be gone", lease.id()),
        )),
    }
}

/// Campaigns and holds the office, or observes.
pub async fn elect(store: Arc<dyn Store>, out: &Printer, args: ElectArgs) -> Result<u8, Failure> {
    let election = Election::new(store, &args.name)?.ttl(args.ttl);
    if args.observe {
        let mut leaders = election.observe().await?;
        let mut printed = 0;
        while args.count.is_none_or(|count| printed < count) {
            let leader = tokio::select! {
                leader = leaders.next() => leader,
                _ = tokio::signal::ctrl_c() => break,
            };
            let leader = match leader {
                Some(leader) => leader?,
                None => return Err(Failure::new(code::OTHER, "the watch ended")),
            };
            let text = leader.as_deref().map(kv_text);
            out.emit(json!({"name": args.name, "leader": text}), || {
                text.unwrap_or_else(|| "(none)".into())
            });
            printed += 1;
        }
        return Ok(0);
    }
    let value = args.value.unwrap_or_default();
    let leadership = tokio::select! {
        leadership = election.campaign(value) => leadership?,
        _ = tokio::signal::ctrl_c() => return Err(Failure::new(130, "interrupted while campaigning")),
    };
    eprintln!(
        "kvctl: leading {} (version {})",
        args.name,
        leadership.version()
    );
    let env = [
        ("KV_ELECTION", args.name.clone()),
        ("KV_LEADER_VERSION", leadership.version().to_string()),
    ];
    match hold(&args.command, &env, leadership.lost()).await? {
        Held::Exited(status) => {
            leadership.resign().await?;
            Ok(status)
        }
        Held::Lost(what) => Err(Failure::new(
            code::LOCK_LOST,
            format!("the leadership of {} was lost {what}", args.name),
        )),
    }
}

/// A leader's value as text (lossy for binary values).
fn kv_text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}
