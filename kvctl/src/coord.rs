//! `kvctl lease` and `kvctl elect`: keys bound to a lease, and leader election, held while a
//! command runs (or until a signal).

use std::sync::Arc;

use futures::StreamExt;
use kv::{Election, PutOptions, Store};
use serde_json::json;

use crate::cli::{ElectArgs, LeaseAction, LeaseArgs};
use crate::lock::{Held, hold};
use crate::output::{Failure, Printer, code};

/// Puts the keys with a lease, holds it, revokes it; or runs `lease grant|keepalive|revoke`.
pub async fn lease(store: &dyn Store, out: &Printer, args: LeaseArgs) -> Result<u8, Failure> {
    match args.action {
        Some(LeaseAction::Grant { ttl }) => {
            let caps = store.capabilities();
            let outlives =
                kv::driver_named(caps.backend).is_some_and(|d| d.leases_outlive_process());
            if !caps.attach_leases || !outlives {
                return Err(Failure::new(
                    code::USAGE,
                    format!(
                        "a {} lease cannot be used by another kvctl (its ID cannot be taken up \
                         elsewhere); hold keys with `kvctl lease KEY=VALUE... -- COMMAND` instead",
                        caps.backend
                    ),
                ));
            }
            let lease = store.grant(ttl).await.map_err(Failure::write)?;
            let ttl_ms = u64::try_from(lease.ttl().as_millis()).unwrap_or(u64::MAX);
            out.emit(json!({"id": lease.id(), "ttl_ms": ttl_ms}), || {
                lease.id().to_owned()
            });
            // Left to run out by itself: `main` does not close the handle after a grant
            // (closing revokes the handle's leases), and nothing renews it from here on.
            return Ok(0);
        }
        Some(LeaseAction::Keepalive { id, command }) => {
            return keepalive(store, &id, &command).await;
        }
        Some(LeaseAction::Revoke { id }) => {
            let lease = store.attach_lease(&id).await.map_err(lease_failure)?;
            lease.revoke().await.map_err(Failure::write)?;
            out.emit(json!({"id": id, "revoked": true}), || "revoked".into());
            return Ok(0);
        }
        None => {}
    }
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
    match hold(&args.command, &env, lease.lost(), lease.validity()).await? {
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

/// Renews lease `id` until a signal (or while `command` runs); the lease is not revoked.
async fn keepalive(store: &dyn Store, id: &str, command: &[String]) -> Result<u8, Failure> {
    let lease = store.attach_lease(id).await.map_err(lease_failure)?;
    eprintln!("kvctl: renewing lease {id} (TTL {:?})", lease.ttl());
    let env = [("KV_LEASE_ID", id.to_owned())];
    match hold(command, &env, lease.lost(), lease.validity()).await? {
        Held::Exited(status) => Ok(status),
        Held::Lost(what) => Err(Failure::new(
            code::LOCK_LOST,
            format!("lease {id} was lost {what}; its keys may be gone"),
        )),
    }
}

/// A lease that cannot be taken up: one that ended is "not found" (exit 1).
pub fn lease_failure(error: kv::Error) -> Failure {
    match error {
        kv::Error::LeaseLost { id } => Failure::new(
            code::NOT_FOUND,
            format!("lease {id}: not found (revoked or expired)"),
        ),
        other => Failure::from(other),
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
    match hold(
        &args.command,
        &env,
        leadership.lost(),
        leadership.validity(),
    )
    .await?
    {
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
