//! [`Registration`]: a key kept under a lease for as long as a service runs, put back after
//! every outage.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::election::{Healing, heals};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::Store;
use crate::types::PutOptions;

/// Where a [`Registration`] stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Not (or no longer) in the store: granting a lease and putting the key, again after a
    /// failure (the last one, if any, says why).
    Registering {
        /// Why the last attempt or the last registration ended.
        last_error: Option<String>,
    },
    /// The key is in the store under this lease, renewed in the background.
    Live {
        /// The lease the key lives under.
        lease_id: String,
        /// The key's version when it was put.
        version: u64,
    },
    /// Ended: stopped, or an error that will not pass (`Closed`, `Auth`, ...).
    Ended {
        /// The error, if one ended it.
        error: Option<String>,
    },
}

/// A service's entry in a registry: `key = value` under a lease of `ttl`, renewed in the
/// background, and granted and put again whenever the lease is lost — an outage longer than
/// the TTL, a server restart, this process frozen — pausing 0.1 s doubling to 2 s between
/// attempts, with a `tracing` warning. While the store is unreachable the key may be gone
/// (others see the instance leave after the TTL); it comes back once a put succeeds. Ends on
/// [`Registration::stop`] (the key goes at once), when the handle closes, or on an error that
/// will not pass.
///
/// ```
/// # async fn demo(store: std::sync::Arc<dyn kv_core::Store>) -> kv_core::Result<()> {
/// use std::time::Duration;
/// use kv_core::Registration;
/// let registration =
///     Registration::start(store, "services/api/instances/node-1", "10.0.0.7:8080", Duration::from_secs(10))?;
/// registration.live().await?; // first registered
/// // ... serve ...
/// registration.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Registration {
    state: tokio::sync::watch::Receiver<Registered>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Registration {
    /// Starts keeping `key = value` registered under leases of `ttl` (spawned on the current
    /// Tokio runtime). `InvalidKey` for a bad key.
    pub fn start(
        store: Arc<dyn Store>,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Result<Registration> {
        let key = Key::parse(key)?;
        let value = value.into();
        let (report, state) =
            tokio::sync::watch::channel(Registered::Registering { last_error: None });
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(store, key, value, ttl, report, stop.clone()));
        Ok(Registration { state, stop, task })
    }

    /// Where it stands now.
    pub fn state(&self) -> Registered {
        self.state.borrow().clone()
    }

    /// Waits until the key is in the store (at once if it is); `Err` if the registration
    /// ended first.
    pub async fn live(&self) -> Result<()> {
        let mut state = self.state.clone();
        let seen = state
            .wait_for(|s| !matches!(s, Registered::Registering { .. }))
            .await
            .map_err(|_| Error::Closed)?
            .clone();
        match seen {
            Registered::Live { .. } => Ok(()),
            Registered::Ended { error } => Err(Error::unavailable(
                format!(
                    "the registration ended{}",
                    error.map_or(String::new(), |e| format!(": {e}"))
                ),
                None,
            )),
            Registered::Registering { .. } => unreachable!("waited past it"),
        }
    }

    /// A receiver of every change of state (to log or export it).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<Registered> {
        self.state.clone()
    }

    /// Stops: the lease is revoked (the key goes at once) and the background task ends.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Registration {
    /// Dropped without [`Registration::stop`]: stops renewing; the key goes within its TTL.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The background task: register, wait for the lease's end or `stop`, register again.
async fn keep(
    store: Arc<dyn Store>,
    key: Key,
    value: Bytes,
    ttl: Duration,
    report: tokio::sync::watch::Sender<Registered>,
    stop: CancellationToken,
) {
    let mut pause = Healing::default();
    loop {
        let attempt = async {
            let lease = store.grant(ttl).await?;
            let options = PutOptions::default().lease(&lease);
            match store.put(key.as_str(), &value, options).await {
                Ok(version) => Ok((lease, version)),
                Err(error) => {
                    let _ = lease.revoke().await;
                    Err(error)
                }
            }
        };
        let attempt = tokio::select! {
            _ = stop.cancelled() => break,
            attempt = attempt => attempt,
        };
        let error = match attempt {
            Ok((lease, version)) => {
                pause = Healing::default();
                report.send_replace(Registered::Live {
                    lease_id: lease.id().to_owned(),
                    version,
                });
                let lost = lease.lost();
                tokio::select! {
                    _ = stop.cancelled() => {
                        let _ = lease.revoke().await;
                        break;
                    }
                    _ = lost.cancelled() => Error::LeaseLost { id: lease.id().to_owned() },
                }
            }
            Err(error) => error,
        };
        if !heals(&error) {
            report.send_replace(Registered::Ended {
                error: Some(error.to_string()),
            });
            return;
        }
        tracing::warn!(target: "kv", key = %key, %error, "registration: registering again");
        report.send_replace(Registered::Registering {
            last_error: Some(error.to_string()),
        });
        if !pause.wait(&stop).await {
            break;
        }
    }
    report.send_replace(Registered::Ended { error: None });
}
