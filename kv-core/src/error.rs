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
    /// True if the same call may succeed when repeated (after a pause): timeouts, lost
    /// connections, and lagged watches (start a new one).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::OutcomeUnknown { .. }
                | Error::Unavailable { .. }
                | Error::WatchLagged { .. }
        )
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

    #[test]
    fn retryable_errors() {
        assert!(
            Error::Timeout {
                operation: "get",
                after: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(Error::unavailable("down", None).is_retryable());
        assert!(!Error::conflict("k", "exists").is_retryable());
        assert!(!Error::Closed.is_retryable());
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
        assert!(lost.is_outcome_unknown() && lost.is_retryable());
        assert!(!Error::unavailable("refused", None).is_outcome_unknown());
        assert!(!Error::conflict("k", "exists").is_outcome_unknown());
    }
}
