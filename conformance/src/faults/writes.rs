//! Writes under faults: a write during a partition, a write whose answer is lost.

use super::*;

/// A write during a partition fails within the store's timeout (1 s in the fault tests, plus
/// slack) with a retryable error whose outcome is unknown or that reached no server; after the
/// heal the same handle works again without being reopened. Returns the time to the error,
/// the error, and the time to the first successful write once the held one has settled (up to
/// 2 s after the heal).
pub async fn a_write_during_a_partition(
    proxied: &dyn Store,
    proxy: &FaultProxy,
) -> (Duration, String, Duration) {
    proxied
        .put("faults/written", b"before", PutOptions::default())
        .await
        .expect("put before the partition");
    proxy.hold();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        proxied.put("faults/written", b"during", PutOptions::default()),
    )
    .await
    .expect("a call during a partition must give up on its own (no call without a timeout)");
    let failed = started.elapsed();
    let error = result.expect_err("a put cannot succeed through a partition");
    assert!(
        error.is_outcome_unknown(),
        "the put was sent on an open connection and its answer never came: the outcome is \
         unknown, and the error must say so (Error::Timeout): {error:?}"
    );
    assert!(
        failed < Duration::from_secs(5),
        "failed only after {failed:?}, longer than the store's timeout allows"
    );
    proxy.heal();
    let healed = Instant::now();
    // The held put may still land once its bytes are delivered (its outcome was unknown, and
    // may come from an older connection than the next call's): give it a moment, so that the
    // write below is the last one.
    while healed.elapsed() < Duration::from_secs(2) {
        match proxied.get("faults/written").await {
            Ok(Some(pair)) if pair.value != "before" => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let writing = Instant::now();
    loop {
        match proxied
            .put("faults/written", b"after", PutOptions::default())
            .await
        {
            Ok(_) => break,
            Err(e) if e.is_transient() && writing.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the handle did not recover after the heal: {e:?}"),
        }
    }
    let recovered = writing.elapsed();
    let now = proxied.get("faults/written").await.expect("get after heal");
    assert_eq!(
        now.map(|p| p.value),
        Some(bytes::Bytes::from_static(b"after")),
        "the write after the heal is read back"
    );
    (
        failed,
        format!("{error} [outcome unknown: {}]", error.is_outcome_unknown()),
        recovered,
    )
}

/// A write that reached the server and was applied, whose answer was lost because the
/// connection was reset on its way back: the error must not say that nothing was applied
/// (`is_outcome_unknown()`), since it was. `proxied` reaches the server through `proxy`, whose
/// every chunk of traffic is delayed by `delay` (longer than it takes `direct` to see the
/// write: its answer is still in the proxy then); the connections are reset as soon as
/// `direct` reads the written value. Returns the error. Panics with the broken rule.
pub async fn a_write_whose_answer_is_lost(
    proxied: &dyn Store,
    direct: &dyn Store,
    proxy: &FaultProxy,
    delay: Duration,
) -> String {
    let key = "faults/answer-lost";
    proxied
        .put(key, b"before", PutOptions::default())
        .await
        .expect("put before the fault");
    proxy.delay(delay);
    let write = proxied.put(key, b"during", PutOptions::default());
    let reset = async {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(pair)) = direct.get(key).await
                && pair.value == "during"
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        proxy.drop_connections();
        proxy.heal();
    };
    let (result, ()) = tokio::join!(write, reset);
    let error = result.expect_err("the answer was reset on its way: the write cannot succeed");
    let stored = direct.get(key).await.expect("read back directly");
    assert_eq!(
        stored.map(|p| p.value),
        Some(bytes::Bytes::from_static(b"during")),
        "the server never applied the write (nothing tested): {error:?}"
    );
    assert!(
        error.is_outcome_unknown(),
        "the write was applied, yet its error says the outcome is known (nothing applied): \
         {error:?}"
    );
    format!("{error}")
}
