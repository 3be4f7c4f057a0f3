//! Cluster cases, written once and run by each clustered backend's tests against a cluster the
//! harness started (`servers::EtcdCluster`, `ZooKeeperEnsemble`, `ConsulCluster`): a load that
//! must keep every acknowledged write through a member failure, and fresh handles that must
//! not fail while a member hangs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kv_core::{Error, Precondition, PutOptions, Store};

/// What a CAS-counter load saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterOutcome {
    /// The counter's final value.
    pub count: u64,
    /// Increments acknowledged (including those whose unknown outcome a re-read resolved).
    pub acknowledged: u64,
    /// Writes whose outcome was unknown (`is_outcome_unknown`), resolved by re-reading.
    pub unknown: u64,
    /// Calls that failed otherwise (nothing applied), reads included.
    pub failed: u64,
}

/// `writers` tasks increment the counter `key` with CAS for `run`; `fault` runs after `after`
/// (on a blocking thread: it may kill and restart servers). Each value carries every writer's
/// last increment (`count|w0,w1,...`), so a writer whose CAS had an unknown outcome tells from
/// a re-read whether it was applied. Panics unless the final count is exactly the acknowledged
/// increments, or, with `reads_must_not_fail`, if any read fails.
pub async fn a_cas_counter_through_a_fault(
    store: Arc<dyn Store>,
    key: &str,
    writers: usize,
    run: Duration,
    after: Duration,
    reads_must_not_fail: bool,
    fault: impl FnOnce() + Send,
) -> CounterOutcome {
    let initial = format!("0|{}", vec!["0"; writers].join(","));
    store
        .atomic_put(
            key,
            initial.as_bytes(),
            Precondition::MustNotExist,
            PutOptions::default(),
        )
        .await
        .expect("the counter is created");
    let acknowledged = Arc::new(AtomicU64::new(0));
    let unknown = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + run;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (store, key) = (store.clone(), key.to_owned());
        let (acknowledged, unknown, failed) =
            (acknowledged.clone(), unknown.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let current = match store.get(&key).await {
                    Ok(Some(current)) => current,
                    other => {
                        assert!(!reads_must_not_fail, "a read failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (count, mut last) = parse(&current.value);
                seq += 1;
                last[writer] = seq;
                let mine = format!(
                    "{}|{}",
                    count + 1,
                    last.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                );
                match store
                    .atomic_put(
                        &key,
                        mine.as_bytes(),
                        Precondition::Version(current.version),
                        PutOptions::default(),
                    )
                    .await
                {
                    Ok(_) => {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::Conflict { .. }) => {}
                    Err(e) if e.is_outcome_unknown() => {
                        unknown.fetch_add(1, Ordering::Relaxed);
                        if applied(store.as_ref(), &key, writer, seq, deadline).await {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(after).await;
    tokio::task::block_in_place(fault);
    for task in tasks {
        task.await.expect("writer");
    }
    let count = loop {
        if let Ok(Some(last)) = store.get(key).await {
            break parse(&last.value).0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let outcome = CounterOutcome {
        count,
        acknowledged: acknowledged.load(Ordering::Relaxed),
        unknown: unknown.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    };
    assert_eq!(
        outcome.count, outcome.acknowledged,
        "acknowledged increments lost, or unacknowledged ones counted: {outcome:?}"
    );
    outcome
}

/// Whether `writer`'s increment `seq` was applied: every later value carries it forward.
async fn applied(store: &dyn Store, key: &str, writer: usize, seq: u64, deadline: Instant) -> bool {
    loop {
        if let Ok(Some(now)) = store.get(key).await {
            return parse(&now.value).1[writer] == seq;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "the store did not answer for 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `count|w0,w1,...`: the counter and each writer's last increment.
fn parse(value: &[u8]) -> (u64, Vec<u64>) {
    let text = std::str::from_utf8(value).expect("counter text");
    let (count, last) = text.split_once('|').expect("count|writers");
    (
        count.parse().expect("count"),
        last.split(',').map(|n| n.parse().expect("seq")).collect(),
    )
}

/// Opens `n` fresh handles with `open` (as `n` runs of kvctl would) and reads `key` through
/// each, expecting `value`: none may fail while a member hangs. Returns the time it all took.
pub async fn fresh_handles_read<S, F, Fut>(n: usize, key: &str, value: &[u8], open: F) -> Duration
where
    S: Store,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let started = Instant::now();
    for i in 0..n {
        let store = open()
            .await
            .unwrap_or_else(|e| panic!("open {i} with a member hung: {e}"));
        let got = store
            .get(key)
            .await
            .unwrap_or_else(|e| panic!("get {i} with a member hung: {e}"));
        assert_eq!(got.map(|p| p.value.to_vec()), Some(value.to_vec()));
    }
    started.elapsed()
}

/// What [`promises_through_a_fault`] saw.
#[derive(Debug, Clone)]
pub struct Promises {
    /// From the fault until the first write through the other handle went through.
    pub writes_again_after: Duration,
    /// The lock held through the fault was kept (else `lost()` fired before anyone took it).
    pub lock_kept: bool,
    /// "all 5 changes", or the error the watch ended with.
    pub watch: String,
}

/// A lock held through `store` (TTL `ttl`) and a tree watch on `w` while `fault` runs (on a
/// blocking thread: it may kill servers and wait for a failover); then 5 writes under `w`
/// through `other` (retried until they go through, for up to 60 s). Panics unless the lock
/// is kept or `lost()` fired before `other` could take it, and unless the watch delivers all
/// 5 changes or ends with an error (never stays silent for 20 s, never ends without an error).
pub async fn promises_through_a_fault(
    store: &dyn Store,
    other: &dyn Store,
    ttl: Duration,
    fault: impl FnOnce() + Send,
) -> Promises {
    use futures::StreamExt;
    let options = kv_core::LockOptions::default().ttl(ttl);
    let guard = store
        .new_lock("leader", options.clone())
        .await
        .expect("a lock")
        .acquire()
        .await
        .expect("the lock is taken");
    let mut watch = store
        .watch_tree("w", kv_core::WatchOptions::default())
        .await
        .expect("a watch");
    let started = Instant::now();
    tokio::task::block_in_place(fault);
    let mut written = 0;
    let mut first = None;
    while written < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no write went through for 60 s"
        );
        match other
            .put(&format!("w/k{written}"), b"v", PutOptions::default())
            .await
        {
            Ok(_) => {
                first.get_or_insert(started.elapsed());
                written += 1;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let taken = other
        .new_lock("leader", options)
        .await
        .expect("a lock")
        .try_acquire()
        .await
        .expect("try_acquire answers");
    assert!(
        taken.is_none() || guard.is_lost(),
        "two holders of one lock through the fault"
    );
    let lock_kept = !guard.is_lost();
    drop(taken);
    let mut seen = 0;
    let watch = loop {
        match tokio::time::timeout(Duration::from_secs(20), watch.next()).await {
            Ok(Some(Ok(event))) => {
                if event.key.as_str().starts_with("w/k") {
                    seen += 1;
                }
                if seen == 5 {
                    break "all 5 changes".to_owned();
                }
            }
            Ok(Some(Err(e))) => break format!("ended with an error: {e}"),
            Ok(None) => panic!("the watch ended without an error"),
            Err(_) => panic!("a silent watch through the fault ({seen} of 5 changes)"),
        }
    };
    Promises {
        writes_again_after: first.unwrap_or_default(),
        lock_kept,
        watch,
    }
}

/// A handle being opened, as [`ClusterBackend::open`] returns it.
pub type Opening = futures::future::BoxFuture<'static, kv_core::Result<Arc<dyn Store>>>;

/// A [`crate::Backend`] on a cluster: the whole suite, run against a cluster the test binary
/// starts once (`url`, which returns its store URL), each case under its own root
/// (`namespace(url, random name)`), opened with `open`.
/// [`cluster_conformance_tests!`](crate::cluster_conformance_tests) builds one.
pub struct ClusterBackend {
    /// For reports.
    pub name: &'static str,
    /// The server kind, for `KV_TEST_SKIP`.
    pub kind: &'static str,
    /// The cluster's store URL, starting the cluster on first use.
    pub url: fn() -> String,
    /// A store URL for a namespace: (cluster URL, random name).
    pub namespace: fn(&str, &str) -> String,
    /// Opens a handle on a namespace.
    pub open: fn(String) -> Opening,
}

#[async_trait::async_trait]
impl crate::Backend for ClusterBackend {
    fn name(&self) -> &str {
        self.name
    }

    fn skipped(&self) -> Option<String> {
        crate::servers::opted_out(self.kind, "cluster conformance")
            .then(|| format!("SKIPPED: {} (KV_TEST_SKIP)", self.name))
    }

    async fn namespace(&self) -> kv_core::Result<String> {
        let url = tokio::task::spawn_blocking(self.url)
            .await
            .map_err(|e| kv_core::Error::Backend(Box::new(e)))?;
        Ok((self.namespace)(&url, &crate::random_name()))
    }

    async fn open(&self, namespace: &str) -> kv_core::Result<Arc<dyn Store>> {
        (self.open)(namespace.to_owned()).await
    }
}

/// Expands into a module `suite` with one `#[test]` per conformance case, run against a cluster
/// started once per test binary (on first use) and kept until the process exits:
///
/// ```ignore
/// conformance::cluster_conformance_tests!(
///     name: "etcd cluster",
///     kind: "etcd",
///     start: EtcdCluster::start(3).map(|c| (c.url.clone(), c)),
///     namespace: |url, name| format!("{url}/{name}"),
///     open: kv_etcd::EtcdStore::open,
/// );
/// ```
#[macro_export]
macro_rules! cluster_conformance_tests {
    (
        name: $name:expr,
        kind: $kind:expr,
        start: $start:expr,
        namespace: $namespace:expr,
        open: $open:path $(,)?
    ) => {
        /// The whole conformance suite against a cluster, each case under its own root.
        mod suite {
            #[allow(unused_imports)]
            use super::*;

            fn cluster_url() -> String {
                static URL: ::std::sync::OnceLock<String> = ::std::sync::OnceLock::new();
                URL.get_or_init(|| {
                    let (url, cluster) = $start
                        .unwrap_or_else(|e| panic!("no cluster for the conformance suite: {e}"));
                    // Its servers live until the test process exits.
                    ::std::mem::forget(cluster);
                    url
                })
                .clone()
            }

            $crate::conformance_tests!($crate::clusters::ClusterBackend {
                name: $name,
                kind: $kind,
                url: cluster_url,
                namespace: $namespace,
                open: |namespace| {
                    Box::pin(async move {
                        let store = $open(&namespace).await?;
                        Ok(::std::sync::Arc::new(store) as ::std::sync::Arc<dyn ::kv_core::Store>)
                    })
                },
            });
        }
    };
}
