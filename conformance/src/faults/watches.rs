//! Watches under faults: through a partition and a reset, and one that stops hearing the
//! server.

use super::*;

/// Runs [`a_watch_through_a_partition`] twice against a server at `server_url` (stores opened
/// as in [`lock_faults`]): a partition of `hold`, then a shorter one whose connections are
/// reset (the client reconnects). Prints the outcomes.
pub async fn watch_faults<S, F, Fut>(
    kind: &str,
    server_url: &str,
    suffix: &str,
    hold: Duration,
    open: F,
) where
    S: Store,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    for reset in [false, true] {
        let (proxy, direct, proxied) = proxied_stores(server_url, suffix, &open).await;
        direct.delete_tree("w").await.expect("clean");
        let hold = if reset { hold / 2 } else { hold };
        let outcome = a_watch_through_a_partition(&proxied, &direct, &proxy, hold, reset).await;
        eprintln!(
            "{kind}: tree watch through a {hold:?} partition{}: {outcome:?}",
            if reset {
                " ending in a connection reset"
            } else {
                ""
            }
        );
    }
    let (proxy, direct, proxied) = proxied_stores(server_url, suffix, &open).await;
    let took =
        a_watch_that_stops_hearing_the_server_ends(&proxied, &direct, &proxy, WATCH_LIVENESS).await;
    eprintln!("{kind}: a watch whose connection stopped ended with an error after {took:?}");
}

/// The longest a watch may stay open after its connection silently stopped, with the fault
/// tests' store timeout of 1 s (docs/SEMANTICS.md, "Watch liveness": 12 s + 5 x the store's
/// timeout).
pub const WATCH_LIVENESS: Duration = Duration::from_secs(17);

/// How a watch came through a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOutcome {
    /// Every change arrived; the time from heal to the last one.
    Delivered(Duration),
    /// The stream ended with this error instead (allowed: never silence).
    Ended(String),
}

/// A tree watch through a partition: 5 keys written before, 5 during (`hold` long, from the
/// other side), 5 right after and one more 2 s later; with `reset` the held connections are
/// also reset before the heal, so the client reconnects. Every key (each written once, so
/// coalescing cannot hide one) must arrive after the heal, or the stream must end with an
/// error — never stay open and silent.
pub async fn a_watch_through_a_partition(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    hold: Duration,
    reset: bool,
) -> WatchOutcome {
    let mut watch = proxied
        .watch_tree("w", WatchOptions::default())
        .await
        .expect("watch");
    let put = |i: usize| async move {
        direct
            .put(&format!("w/k{i:02}"), b"v", PutOptions::default())
            .await
            .expect("put from the other side of the partition");
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut next =
        async |seen: &mut std::collections::BTreeSet<String>, want: usize, within: Duration| {
            let deadline = Instant::now() + within;
            while seen.len() < want {
                match tokio::time::timeout_at(deadline.into(), watch.next()).await {
                    Ok(Some(Ok(event))) => {
                        seen.insert(event.key.to_string());
                    }
                    Ok(Some(Err(error))) => return Some(WatchOutcome::Ended(error.to_string())),
                    Ok(None) => panic!("the watch ended without an error"),
                    Err(_) => return None,
                }
            }
            Some(WatchOutcome::Delivered(Duration::ZERO))
        };
    for i in 0..5 {
        put(i).await;
    }
    match next(&mut seen, 5, Duration::from_secs(10)).await {
        Some(WatchOutcome::Delivered(_)) => {}
        other => panic!("before the partition the watch delivers every put: {other:?}"),
    }
    proxy.hold();
    let held = Instant::now();
    for i in 5..10 {
        put(i).await;
        tokio::time::sleep(hold / 6).await;
    }
    tokio::time::sleep(hold.saturating_sub(held.elapsed())).await;
    if reset {
        proxy.drop_connections();
    }
    proxy.heal();
    let healed = Instant::now();
    for i in 10..15 {
        put(i).await;
    }
    let bound = Duration::from_secs(30);
    fn silent(seen: &std::collections::BTreeSet<String>, want: usize, bound: Duration) -> ! {
        panic!(
            "a silent watch: {} of {want} keys arrived, no error, within {bound:?} after the \
             partition healed; missing {:?}",
            seen.len(),
            (0..want)
                .map(|i| format!("w/k{i:02}"))
                .filter(|k| !seen.contains(k))
                .collect::<Vec<_>>()
        )
    }
    let delivered = match next(&mut seen, 15, bound).await {
        Some(WatchOutcome::Delivered(_)) => healed.elapsed(),
        Some(ended) => return ended,
        None => silent(&seen, 15, bound),
    };
    // Still hearing the server once things have settled (a watch the server no longer holds
    // could have caught up above by re-reading, then gone silent).
    tokio::time::sleep(Duration::from_secs(2)).await;
    put(15).await;
    match next(&mut seen, 16, bound).await {
        Some(WatchOutcome::Delivered(_)) => WatchOutcome::Delivered(delivered),
        Some(ended) => ended,
        None => silent(&seen, 16, bound),
    }
}

/// A watch whose connection silently stops (a partition that never heals, while the other side
/// keeps writing) ends with an error within `bound`, never staying open and silent. Returns the
/// time from the partition to the error.
pub async fn a_watch_that_stops_hearing_the_server_ends(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    bound: Duration,
) -> Duration {
    let mut watch = proxied
        .watch_tree("live", WatchOptions::default())
        .await
        .expect("watch");
    direct
        .put("live/k", b"0", PutOptions::default())
        .await
        .expect("put");
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the watch hears the first put: {first:?}"
    );
    proxy.hold();
    let partitioned = Instant::now();
    let writes = async {
        for i in 1.. {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = direct
                .put("live/k", i.to_string().as_bytes(), PutOptions::default())
                .await;
        }
    };
    let ended = async {
        match watch.next().await {
            Some(Ok(event)) => panic!("an event came through a partition: {event:?}"),
            Some(Err(_)) => partitioned.elapsed(),
            None => panic!("the watch ended without an error"),
        }
    };
    let outcome = tokio::time::timeout(bound, async {
        tokio::select! {
            took = ended => took,
            () = writes => unreachable!("writes go on until the watch ends"),
        }
    })
    .await;
    proxy.heal();
    outcome.unwrap_or_else(|_| {
        panic!("a silent watch: still open with no error {bound:?} after its connection stopped")
    })
}
