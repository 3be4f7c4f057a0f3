//! Helpers shared by the cases.

use std::time::Duration;

use futures::StreamExt;
use kv_core::{Error, EventKind, KvPair, WatchEvent, WatchStream};

/// How long a case waits for something that must happen (an event, an expiry).
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);
/// How long a case watches for something that must not happen.
pub(crate) const QUIET: Duration = Duration::from_millis(400);

/// A random name for an isolated namespace or root prefix: `kvtest-` and 16 hex digits.
pub fn random_name() -> String {
    format!("kvtest-{:016x}", fastrand::u64(..))
}

/// The next event of `stream`; panics on an error item, the end of the stream, or a timeout.
pub(crate) async fn next_event(stream: &mut WatchStream, what: &str) -> WatchEvent {
    next_event_within(stream, PATIENCE, what).await
}

/// [`next_event`] waiting up to `within`.
pub(crate) async fn next_event_within(
    stream: &mut WatchStream,
    within: Duration,
    what: &str,
) -> WatchEvent {
    match tokio::time::timeout(within, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("{what}: the watch failed: {e}"),
        Ok(None) => panic!("{what}: the watch ended without an error"),
        Err(_) => panic!("{what}: no event within {within:?}"),
    }
}

/// Panics if `stream` yields anything within [`QUIET`].
pub(crate) async fn expect_quiet(stream: &mut WatchStream, what: &str) {
    if let Ok(item) = tokio::time::timeout(QUIET, stream.next()).await {
        panic!("{what}: expected no event, got {item:?}");
    }
}

/// Reads until the stream yields an error, which is returned; panics if it ends silently or
/// takes too long. Events before the error are returned too.
pub(crate) async fn until_error(stream: &mut WatchStream, what: &str) -> (Vec<WatchEvent>, Error) {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(e))) => return (events, e),
            Ok(None) => panic!("{what}: the watch ended silently, without an error item"),
            Err(_) => panic!("{what}: no error within {PATIENCE:?}"),
        }
    }
}

/// Asserts that a watch event is a put of `key` with `value`.
#[track_caller]
pub(crate) fn assert_put(event: &WatchEvent, key: &str, value: &[u8]) {
    assert_eq!(
        (event.kind, event.key.as_str(), &event.value[..]),
        (EventKind::Put, key, value),
        "expected a Put of {key}={:?}, got {event:?}",
        String::from_utf8_lossy(value)
    );
}

/// Asserts that a watch event is a delete of `key`.
#[track_caller]
pub(crate) fn assert_delete(event: &WatchEvent, key: &str) {
    assert_eq!(
        (event.kind, event.key.as_str()),
        (EventKind::Delete, key),
        "expected a Delete of {key}, got {event:?}"
    );
}

/// The keys of `pairs`, as strings.
pub(crate) fn keys(pairs: &[KvPair]) -> Vec<&str> {
    pairs.iter().map(|p| p.key.as_str()).collect()
}

/// Asserts that a result is an error matching `pattern`.
#[macro_export]
#[doc(hidden)]
macro_rules! assert_err {
    ($result:expr, $pattern:pat, $($msg:tt)+) => {
        match $result {
            Err($pattern) => {}
            Err(other) => panic!("{}: expected {}, got the error {other:?}", format_args!($($msg)+), stringify!($pattern)),
            Ok(_) => panic!("{}: expected {}, got Ok", format_args!($($msg)+), stringify!($pattern)),
        }
    };
}
