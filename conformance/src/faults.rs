//! Failure cases that need control over the server (stopping it), run by each networked
//! backend's own tests with a server it started for the purpose.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kv_core::{Error, PutOptions, Store, WatchOptions};

/// The server dies under an open store: calls fail with a retryable error (`Unavailable` or
/// `Timeout`) within 5 s, and an open watch ends with `Unavailable` — never silently — within
/// 20 s. `stop` kills the server. Panics with the broken rule.
pub async fn a_stopped_server(store: &dyn Store, stop: impl FnOnce()) {
    store
        .put("k", b"v", PutOptions::default())
        .await
        .expect("put before the stop");
    let mut watch = store
        .watch_tree("", WatchOptions::default())
        .await
        .expect("watch before the stop");
    assert!(
        matches!(watch.next().await, Some(Ok(_))),
        "the watch starts with the current state"
    );

    stop();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let error = store
        .put("k", b"w", PutOptions::default())
        .await
        .expect_err("a put to a stopped server must fail");
    assert!(
        error.is_retryable(),
        "a dead server is Unavailable or Timeout, got {error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed only after {:?}",
        started.elapsed()
    );
    let error = store
        .get("k")
        .await
        .expect_err("a get from a stopped server must fail");
    assert!(
        matches!(error, Error::Unavailable { .. } | Error::Timeout { .. }),
        "{error:?}"
    );

    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Some(error),
                None => return None,
            }
        }
    })
    .await
    .expect("the watch must end once it cannot be resumed");
    let error = ended.expect("the watch must end with an error, not silently");
    assert!(
        matches!(error, Error::Unavailable { .. }),
        "the lost watch ends with Unavailable, got {error:?}"
    );
}
