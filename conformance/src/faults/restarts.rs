//! The server itself stopped: paused, restarted on its data, killed for good.

use super::*;

/// Runs [`a_server_restart`] on a server of this test's own (`server`, started by a process
/// launcher, so it can be killed and restarted) with a store opened by `open(url + suffix)`.
/// Prints the outcome.
pub async fn restart_faults<S, F, Fut>(
    kind: &str,
    server: &crate::servers::Server,
    suffix: &str,
    open: F,
) where
    S: Store,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let store = open(format!("{}{suffix}", server.url))
        .await
        .expect("store");
    let outcome = a_server_restart(&store, server).await;
    eprintln!("{kind}: kill -9 and restart: {outcome:?}");
    let (failed, recovered) = a_paused_server(&store, server).await;
    eprintln!(
        "{kind}: server paused (SIGSTOP): a put failed after {failed:?}; after SIGCONT the handle \
         worked again in {recovered:?}"
    );
}

/// The server is frozen (SIGSTOP: connections open, nothing answered): a write fails within the
/// store's timeout with a retryable error; once it is thawed (SIGCONT) the same handle works.
/// Returns the time to the error and from the thaw to the first successful call.
pub async fn a_paused_server(
    store: &dyn Store,
    server: &crate::servers::Server,
) -> (Duration, Duration) {
    server.pause().expect("SIGSTOP");
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        store.put("pause/k", b"v", PutOptions::default()),
    )
    .await;
    let failed = started.elapsed();
    server.resume().expect("SIGCONT");
    let error = result
        .expect("a call to a frozen server must give up on its own")
        .expect_err("a frozen server cannot answer");
    assert!(error.is_transient(), "retryable: {error:?}");
    assert!(
        failed < Duration::from_secs(5),
        "failed only after {failed:?}"
    );
    let resumed = Instant::now();
    loop {
        match store.put("pause/k", b"w", PutOptions::default()).await {
            Ok(_) => break,
            Err(e) if e.is_transient() && resumed.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the handle did not recover after SIGCONT: {e:?}"),
        }
    }
    (failed, resumed.elapsed())
}

/// What a server restart did to an open store and its watch.
#[derive(Debug)]
pub struct RestartOutcome {
    /// From the restart (server ready again) to the first successful call on the same handle.
    pub recovered: Duration,
    /// Whether the server kept the data written before it was killed.
    pub kept_data: bool,
    /// How the open watch came through.
    pub watch: WatchOutcome,
}

/// The open handle works again without being reopened; an open watch either goes on with no
/// gap (every later change arrives, and if the server lost its data, the watch says so with
/// Delete events or an error) or ends with an error — never stays open and silent.
pub async fn a_server_restart(
    store: &dyn Store,
    server: &crate::servers::Server,
) -> RestartOutcome {
    store
        .put("restart/before", b"1", PutOptions::default())
        .await
        .expect("put before the restart");
    let mut watch = store
        .watch_tree("restart", WatchOptions::default())
        .await
        .expect("watch");
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the watch starts with the current state: {first:?}"
    );
    // The harness blocks while the server goes down and comes back (needs a multi-threaded
    // runtime: the store's own tasks go on meanwhile).
    tokio::task::block_in_place(|| {
        server.kill9().expect("kill -9");
        std::thread::sleep(Duration::from_millis(500));
        server
            .restart()
            .expect("restart on the same data directory and port");
    });
    let restarted = Instant::now();
    loop {
        match store
            .put("restart/after", b"2", PutOptions::default())
            .await
        {
            Ok(_) => break,
            Err(e) if e.is_transient() && restarted.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the handle did not recover after the restart: {e:?}"),
        }
    }
    let recovered = restarted.elapsed();
    let kept_data = store
        .get("restart/before")
        .await
        .expect("get after the restart")
        .is_some();
    // Now the watch: every later change, or an error; a lost key must be reported as gone.
    let mut seen_after = false;
    let mut saw_before_deleted = false;
    let bound = WATCH_LIVENESS + Duration::from_secs(10);
    let deadline = Instant::now() + bound;
    let mut extra = 0;
    let watch_outcome = loop {
        match tokio::time::timeout_at(deadline.into(), watch.next()).await {
            Ok(Some(Ok(event))) => {
                if event.key.as_str() == "restart/after" {
                    seen_after = true;
                }
                if event.key.as_str() == "restart/before"
                    && event.kind == kv_core::EventKind::Delete
                {
                    saw_before_deleted = true;
                }
                if event.key.as_str() == "restart/later" {
                    break WatchOutcome::Delivered(restarted.elapsed());
                }
                if seen_after && extra == 0 {
                    // Still hearing the server: one more change after the catch-up.
                    extra += 1;
                    store
                        .put("restart/later", b"3", PutOptions::default())
                        .await
                        .expect("put after the restart");
                }
            }
            Ok(Some(Err(error))) => break WatchOutcome::Ended(error.to_string()),
            Ok(None) => panic!("the watch ended without an error"),
            Err(_) => panic!(
                "a silent watch: open, no error, {bound:?} after the restart (saw restart/after: \
                 {seen_after})"
            ),
        }
    };
    if let WatchOutcome::Delivered(_) = watch_outcome {
        assert!(
            kept_data || saw_before_deleted,
            "the server lost restart/before, and the watch went on without saying so"
        );
    }
    RestartOutcome {
        recovered,
        kept_data,
        watch: watch_outcome,
    }
}

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
        error.is_transient(),
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
