//! The one error type every backend returns.

use std::time::Duration;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed source error from a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong, typed so callers can react.
///
/// Messages never contain passwords or tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key or prefix is not valid; nothing was sent or changed.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The input as given (truncated if long).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The store URL could not be parsed or names unknown options.
    #[error("invalid store URL: {reason}")]
    InvalidUrl {
        /// What is wrong, without any secret from the URL.
        reason: String,
    },
    /// An argument other than a key is out of range (a zero TTL, a TTL below the backend's
    /// minimum, a zero watch buffer); nothing was changed.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The value is larger than the backend accepts; nothing was written.
    #[error("value of {size} bytes exceeds this backend's limit of {max} bytes")]
    ValueTooLarge {
        /// Size of the rejected value.
        size: usize,
        /// The backend's limit ([`crate::Capabilities::max_value_bytes`]).
        max: usize,
    },
    /// A precondition (`MustNotExist`, `Version`) did not hold; nothing was changed.
    #[error("precondition failed for {key}: {reason}")]
    Conflict {
        /// The key whose precondition failed.
        key: String,
        /// The expected and actual state.
        reason: String,
    },
    /// The backend did not answer in time. The operation may or may not have been applied.
    #[error(
        "{operation} timed out after {after:?}; check that the server is reachable or raise the timeout"
    )]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// A write was sent and its answer was lost (the server or the connection to the one that
    /// applies writes failed mid-call): it may or may not have been applied. Re-read before
    /// retrying (docs/SEMANTICS.md, "Unknown outcomes").
    #[error(
        "{operation}: the answer was lost ({reason}); it may or may not have been applied: re-read before retrying"
    )]
    OutcomeUnknown {
        /// What was being done.
        operation: &'static str,
        /// What the backend said, without secrets.
        reason: String,
    },
    /// The backend cannot be reached or lost the connection.
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// What failed, and what to check.
        message: String,
        /// The client library's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// Authentication or authorization failed.
    #[error("authentication failed: {message}")]
    Auth {
        /// What the server said, without the credentials.
        message: String,
    },
    /// The lock's lease expired or could not be renewed: it can no longer be guaranteed.
    #[error("lock on {key} was lost (lease expired or could not be renewed)")]
    LockLost {
        /// The lock's key.
        key: String,
    },
    /// The lease was revoked, expired or could not be renewed: its keys may be gone, and it
    /// takes no more puts.
    #[error("lease {id} was lost (revoked, expired or could not be renewed); grant a new one")]
    LeaseLost {
        /// The lease's ID.
        id: String,
    },
    /// The watch consumer fell behind the watch buffer; the stream ended. Start a new watch
    /// (with `since` where the backend keeps history) to catch up.
    #[error(
        "watch fell more than {buffer} events behind and was ended; start a new watch to catch up"
    )]
    WatchLagged {
        /// The buffer size that overflowed.
        buffer: usize,
    },
    /// `since` asked for history the backend no longer keeps.
    #[error(
        "watch history before version {oldest} is no longer kept (asked to resume after {requested}); re-read the current state instead"
    )]
    Compacted {
        /// The version asked for.
        requested: u64,
        /// The oldest version from which history is still available.
        oldest: u64,
    },
    /// The backend lacks a capability the call needs.
    #[error("{backend} does not support {capability}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// The missing capability, as named in [`crate::Capabilities`].
        capability: &'static str,
    },
    /// The store handle was closed.
    #[error("the store handle is closed")]
    Closed,
    /// A stored value is not a valid encoding of the type asked for
    /// ([`StoreExt::get_json`](crate::StoreExt::get_json)); nothing was changed.
    #[error("the value of {key} is not a valid {type_name}: {reason}")]
    Decode {
        /// The key whose value was read.
        key: String,
        /// The Rust type asked for.
        type_name: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// Any other backend failure.
    #[error("backend error: {0}")]
    Backend(#[source] BoxError),
}

impl Error {
    /// True if the same call may be sent again as it is, whatever it was: nothing was applied
    /// ([`Error::Unavailable`]: refused, reset before sending, no leader), or a watch fell
    /// behind ([`Error::WatchLagged`]: start a new one). False where a write may have been
    /// applied ([`Error::Timeout`], [`Error::OutcomeUnknown`]): sending it again could apply a
    /// put twice or fail a CAS against its own success — re-read first
    /// ([`Error::is_outcome_unknown`]). The loop to write:
    ///
    /// ```no_run
    /// # async fn demo(store: &dyn kv_core::Store) -> kv_core::Result<u64> {
    /// use kv_core::{Precondition, PutOptions};
    /// loop {
    ///     let current = store.get("jobs/next").await?;
    ///     let (expected, n) = match &current {
    ///         Some(pair) => (Precondition::Version(pair.version), pair.value.len()),
    ///         None => (Precondition::MustNotExist, 0),
    ///     };
    ///     let next = vec![b'x'; n + 1];
    ///     match store.atomic_put("jobs/next", &next, expected, PutOptions::default()).await {
    ///         Ok(version) => return Ok(version),
    ///         // Nothing applied: the same call again.
    ///         Err(e) if e.is_retryable() => continue,
    ///         // Maybe applied: the next round re-reads; a CAS that took effect then
    ///         // fails its check, so stop if the key holds what this one wrote.
    ///         Err(e) if e.is_outcome_unknown() => {
    ///             if let Some(pair) = store.get("jobs/next").await? {
    ///                 if pair.value[..] == next[..] {
    ///                     return Ok(pair.version);
    ///                 }
    ///             }
    ///         }
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::WatchLagged { .. })
    }

    /// True if the failure may pass: [`Error::is_retryable`] errors and those that leave a
    /// write's outcome unknown (a timeout, a connection lost under the call). A read may be
    /// repeated after any of them; a write only after re-reading when
    /// [`Error::is_outcome_unknown`].
    pub fn is_transient(&self) -> bool {
        self.is_retryable() || self.is_outcome_unknown()
    }

    /// True if a write that failed this way may nevertheless have been applied: the request
    /// may have reached the server and only the answer been lost ([`Error::Timeout`],
    /// [`Error::OutcomeUnknown`]). Re-read
    /// the key (its version) before retrying; a blind retry of a CAS can fail against its own
    /// earlier success, and a retried put is applied twice (docs/SEMANTICS.md, "Unknown
    /// outcomes").
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::OutcomeUnknown { .. })
    }

    /// A [`Error::Timeout`] from a client library (which knows neither the operation nor the
    /// budget) restated as `operation` timing out after `after`; other errors unchanged.
    pub fn timed_out_as(self, operation: &'static str, after: Duration) -> Error {
        match self {
            Error::Timeout { .. } => Error::Timeout { operation, after },
            other => other,
        }
    }

    /// Builds an [`Error::Conflict`].
    pub fn conflict(key: impl ToString, reason: impl Into<String>) -> Error {
        Error::Conflict {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::InvalidUrl`].
    pub fn invalid_url(reason: impl Into<String>) -> Error {
        Error::InvalidUrl {
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::InvalidArgument`].
    pub fn invalid_argument(reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Unavailable`].
    pub fn unavailable(message: impl Into<String>, source: Option<BoxError>) -> Error {
        Error::Unavailable {
            message: message.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error kind: may the same call be sent again as it is (nothing applied), may the
    /// failure pass, may a write have been applied. Sending again is never allowed where a
    /// write may have been applied (the retry that applies a put twice).
    #[test]
    fn each_error_kind_says_whether_a_call_may_be_sent_again() {
        let s = String::new;
        let kinds: Vec<(Error, bool, bool, bool)> = vec![
            // (error, is_retryable, is_transient, is_outcome_unknown)
            (
                Error::InvalidKey {
                    key: s(),
                    reason: "empty",
                },
                false,
                false,
                false,
            ),
            (Error::InvalidUrl { reason: s() }, false, false, false),
            (Error::invalid_argument("bad"), false, false, false),
            (
                Error::ValueTooLarge { size: 2, max: 1 },
                false,
                false,
                false,
            ),
            (Error::conflict("k", "exists"), false, false, false),
            (
                Error::Timeout {
                    operation: "put",
                    after: Duration::from_secs(1),
                },
                false,
                true,
                true,
            ),
            (
                Error::OutcomeUnknown {
                    operation: "put",
                    reason: s(),
                },
                false,
                true,
                true,
            ),
            (Error::unavailable("refused", None), true, true, false),
            (Error::Auth { message: s() }, false, false, false),
            (Error::LockLost { key: s() }, false, false, false),
            (Error::LeaseLost { id: s() }, false, false, false),
            (Error::WatchLagged { buffer: 1 }, true, true, false),
            (
                Error::Compacted {
                    requested: 1,
                    oldest: 2,
                },
                false,
                false,
                false,
            ),
            (
                Error::Unsupported {
                    backend: "b",
                    capability: "c",
                },
                false,
                false,
                false,
            ),
            (Error::Closed, false, false, false),
            (
                Error::Decode {
                    key: s(),
                    type_name: "T",
                    reason: s(),
                },
                false,
                false,
                false,
            ),
            (Error::Backend("boom".into()), false, false, false),
        ];
        for (error, retryable, transient, unknown) in kinds {
            assert_eq!(error.is_retryable(), retryable, "is_retryable: {error:?}");
            assert_eq!(error.is_transient(), transient, "is_transient: {error:?}");
            assert_eq!(
                error.is_outcome_unknown(),
                unknown,
                "is_outcome_unknown: {error:?}"
            );
            assert!(
                !(error.is_retryable() && error.is_outcome_unknown()),
                "sent again although it may have been applied: {error:?}"
            );
        }
    }

    #[test]
    fn only_timeouts_leave_the_outcome_unknown() {
        let timeout = Error::Timeout {
            operation: "put",
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_outcome_unknown());
        let lost = Error::OutcomeUnknown {
            operation: "put",
            reason: "rpc error making call: EOF".into(),
        };
        assert!(lost.is_outcome_unknown() && !lost.is_retryable());
        assert!(!Error::unavailable("refused", None).is_outcome_unknown());
        assert!(!Error::conflict("k", "exists").is_outcome_unknown());
    }
}
