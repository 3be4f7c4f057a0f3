//! How etcd's gRPC statuses become kv errors.

use std::time::Duration;

use kv_core::Error;

/// Maps the status of a failed write (any call that may change etcd's state) to a kv error:
/// `Unavailable` only when etcd cannot have applied it — the connection was never made, or
/// etcd had no leader to propose it to (etcd's own client retries writes on these alone);
/// the other failures of a sent request (the connection reset or its pings unanswered, a
/// leader change, etcd's own "request timed out") are [`Error::OutcomeUnknown`].
pub(crate) fn map_write_error(operation: &'static str, status: tonic::Status) -> Error {
    use tonic::Code;
    let message = status.message();
    if kv_core::failpoint::armed("write-unavailable-after-send") {
        // Planted bug (self-test only): every failed write "applied nothing".
        return Error::unavailable(format!("etcd: {message}"), None);
    }
    let ambiguous = match status.code() {
        Code::Unavailable if message.starts_with("etcdserver:") => {
            message != "etcdserver: no leader"
        }
        // tonic's status for a connection that could not be made ("tcp connect error", a
        // refused connection): the request never left. Any other: it may have.
        Code::Unavailable => !(message.contains("connect") || message.contains("refused")),
        // A connection that broke under the call.
        Code::Unknown | Code::Aborted => true,
        // tonic's own request timeout ("Timeout expired") is a Timeout: unknown too.
        Code::Cancelled => !message.contains("Timeout expired"),
        _ => false,
    };
    if ambiguous {
        return Error::OutcomeUnknown {
            operation,
            reason: format!("etcd: {message}"),
        };
    }
    map_error(status)
}

/// Maps the gRPC status of a failed etcd call to a kv error.
pub(crate) fn map_error(status: tonic::Status) -> Error {
    use tonic::Code;
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => Error::Auth {
            message: status.message().to_owned(),
        },
        // etcd reports bad credentials as InvalidArgument.
        Code::InvalidArgument if status.message().contains("authentication failed") => {
            Error::Auth {
                message: status.message().to_owned(),
            }
        }
        // tonic's own request timeout (the connection's `timeout`) ends a call with
        // Cancelled, "Timeout expired": the request was sent, its outcome is unknown.
        Code::DeadlineExceeded => Error::Timeout {
            operation: "etcd request",
            after: Duration::ZERO,
        },
        Code::Cancelled if status.message().contains("Timeout expired") => Error::Timeout {
            operation: "etcd request",
            after: Duration::ZERO,
        },
        Code::Unavailable | Code::Cancelled | Code::Aborted | Code::Unknown => Error::unavailable(
            format!("etcd: {}", status.message()),
            Some(Box::new(status)),
        ),
        _ => Error::Backend(Box::new(status)),
    }
}
