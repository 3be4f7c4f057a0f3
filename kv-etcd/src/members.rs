//! The cluster's members as a store sees them, and which one its calls go to.

use std::time::Duration;

use kv_core::{Error, Result};

use crate::client::{Client, ConnectOptions};
use crate::errors::map_error;

/// The cluster's members as the store sees them: a client per listed endpoint, and which one
/// calls go to. A member that fails to answer hands the role to the next (round robin), so a
/// hung or dead member is skipped after one failed call instead of being picked again at
/// random; etcd's own balancer keeps picking it.
pub(crate) struct Members {
    clients: Vec<Client>,
    /// The endpoint of each client (same order), for errors.
    endpoints: Vec<String>,
    preferred: std::sync::atomic::AtomicUsize,
}

impl Members {
    /// One member reached through `client` (a channel of the caller's), named `endpoint`.
    pub(crate) fn over(client: Client, endpoint: &str) -> Members {
        Members {
            clients: vec![client],
            endpoints: vec![endpoint.to_owned()],
            preferred: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// One client per endpoint (connecting is lazy, except for authentication, where the
    /// members that refuse or do not answer are left out); an error only if none is usable.
    pub(crate) async fn connect(
        endpoints: &[String],
        options: &ConnectOptions,
        within: Duration,
    ) -> Result<Members> {
        let attempts = endpoints.iter().map(|endpoint| async move {
            tokio::time::timeout(within, Client::connect(endpoint, options))
                .await
                .map_err(|_| Error::Timeout {
                    operation: "connect",
                    after: within,
                })?
                .map(|client| (client, endpoint.clone()))
        });
        let (mut clients, mut kept) = (Vec::new(), Vec::new());
        let mut last_error = None;
        for attempt in futures::future::join_all(attempts).await {
            match attempt {
                Ok((client, endpoint)) => {
                    clients.push(client);
                    kept.push(endpoint);
                }
                Err(error) if !error.is_transient() => return Err(error),
                Err(error) => last_error = Some(error),
            }
        }
        match (clients.is_empty(), last_error) {
            (true, Some(error)) => Err(error),
            _ => Ok(Members {
                clients,
                endpoints: kept,
                preferred: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    /// `error` naming the member it came from, when it says the member could not be reached.
    pub(crate) fn at(&self, member: usize, error: Error) -> Error {
        naming(&self.endpoints[member], error)
    }

    /// `error` naming every member, when none could be reached.
    pub(crate) fn at_all(&self, error: Error) -> Error {
        naming(&format!("none of {}", self.endpoints.join(", ")), error)
    }

    /// Asks every member for its status at once and prefers the first that answers; an error
    /// if none answers within `within`.
    pub(crate) async fn prefer_first_answering(&self, within: Duration) -> Result<()> {
        let asks = self.clients.iter().enumerate().map(|(index, client)| {
            let client = client.clone();
            Box::pin(async move { client.status().await.map(|_| index) })
        });
        match tokio::time::timeout(within, futures::future::select_ok(asks)).await {
            Ok(Ok((index, _))) => {
                self.preferred
                    .store(index, std::sync::atomic::Ordering::Release);
                Ok(())
            }
            Ok(Err(error)) => {
                let error = map_error(error).timed_out_as("status", within);
                Err(match self.len() {
                    1 => self.at(0, error),
                    _ => self.at_all(error),
                })
            }
            Err(_) => Err(Error::Timeout {
                operation: "status",
                after: within,
            }),
        }
    }

    /// The preferred member's index and client.
    pub(crate) fn pick(&self) -> (usize, Client) {
        let index = self.preferred.load(std::sync::atomic::Ordering::Acquire) % self.len();
        (index, self.clients[index].clone())
    }

    /// `member` did not answer: prefer the next one (unless another call moved on already).
    pub(crate) fn failed(&self, member: usize) {
        let next = (member + 1) % self.len();
        let moved = self.preferred.compare_exchange(
            member,
            next,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        );
        if moved.is_ok() && self.len() > 1 {
            tracing::warn!(target: "kv", backend = "etcd", member, next, "a member did not answer; moving to the next one");
        }
    }
}

/// An `Unavailable` error with the member(s) it could not reach named; others unchanged.
pub(crate) fn naming(members: &str, error: Error) -> Error {
    match error {
        Error::Unavailable { message, source } => Error::Unavailable {
            message: format!("{message} ({members})"),
            source,
        },
        other => other,
    }
}
