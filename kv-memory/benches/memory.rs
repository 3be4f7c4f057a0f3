//! kv-memory against a plain `RwLock<BTreeMap>` measured in the same run.
//!
//! `cargo bench -p coordkv-memory --bench memory`; the numbers are in docs/BENCHMARKS.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures::{FutureExt, StreamExt};
use kv_core::{PutOptions, Store, WatchOptions, WatchStream};
use kv_memory::MemoryStore;
use parking_lot::RwLock;
use tokio::sync::mpsc;

const KEYS: usize = 1_000;
const WATCHERS: usize = 10_000;

fn key(i: usize) -> String {
    format!("app/config/key{i:04}")
}

/// The baseline: what a hand-rolled in-process store would be.
struct Baseline(RwLock<BTreeMap<String, (Bytes, u64)>>);

impl Baseline {
    fn get(&self, key: &str) -> Option<(Bytes, u64)> {
        self.0.read().get(key).cloned()
    }

    fn put(&self, key: &str, value: &[u8]) {
        let mut map = self.0.write();
        let version = map.get(key).map_or(1, |(_, v)| v + 1);
        map.insert(key.to_owned(), (Bytes::copy_from_slice(value), version));
    }

    fn list(&self, prefix: &str) -> Vec<(String, Bytes, u64)> {
        self.0
            .read()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, ver))| (k.clone(), v.clone(), *ver))
            .collect()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn filled() -> (MemoryStore, Baseline) {
    let store = MemoryStore::open("memory://").expect("memory store");
    let baseline = Baseline(RwLock::new(BTreeMap::new()));
    for i in 0..KEYS {
        store
            .put(
                &key(i),
                b"value-64-bytes-value-64-bytes-value-64-bytes-value-64-bytes-1234",
                PutOptions::default(),
            )
            .now_or_never()
            .expect("memory put is immediate")
            .expect("put");
        baseline.put(
            &key(i),
            b"value-64-bytes-value-64-bytes-value-64-bytes-value-64-bytes-1234",
        );
    }
    (store, baseline)
}

fn get_put(c: &mut Criterion) {
    let rt = runtime();
    let (store, baseline) = filled();
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let value = [7u8; 64];

    let mut group = c.benchmark_group("get");
    let mut i = 0;
    group.bench_function("kv-memory", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = &keys[i];
            let store = &store;
            async move { black_box(store.get(key).await.expect("get")) }
        })
    });
    let mut i = 0;
    group.bench_function("rwlock-btreemap", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = &keys[i];
            let baseline = &baseline;
            async move { black_box(baseline.get(key)) }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("put");
    let mut i = 0;
    group.bench_function("kv-memory", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = &keys[i];
            let store = &store;
            async move {
                black_box(
                    store
                        .put(key, &value, PutOptions::default())
                        .await
                        .expect("put"),
                )
            }
        })
    });
    let mut i = 0;
    group.bench_function("rwlock-btreemap", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = &keys[i];
            let baseline = &baseline;
            async move { baseline.put(key, &value) }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("list_1000");
    group.bench_function("kv-memory", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(store.list("app/config").await.expect("list")) })
    });
    group.bench_function("rwlock-btreemap", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(baseline.list("app/config/")) })
    });
    group.finish();
}

/// One put reaching 10,000 tree watchers, against the floor of sending the same event into
/// 10,000 bounded channels. Only the put is timed; the watchers are drained untimed.
fn fan_out(c: &mut Criterion) {
    let rt = runtime();
    let store = MemoryStore::open("memory://").expect("memory store");
    let mut watches: Vec<WatchStream> = (0..WATCHERS)
        .map(|_| {
            rt.block_on(store.watch_tree("fan", WatchOptions::default().buffer(16)))
                .expect("watch")
        })
        .collect();
    let mut group = c.benchmark_group("fan_out_10000");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function(BenchmarkId::new("kv-memory", "put"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                rt.block_on(store.put("fan/key", b"v", PutOptions::default()))
                    .expect("put");
                total += started.elapsed();
                for watch in &mut watches {
                    let event = watch.next().now_or_never().flatten().expect("delivered");
                    black_box(event.expect("event"));
                }
            }
            total
        })
    });
    let event = rt
        .block_on(async {
            let mut w = store
                .watch("fan/key", WatchOptions::default())
                .await
                .expect("watch");
            w.next().await
        })
        .expect("event")
        .expect("event");
    let (senders, mut receivers): (Vec<_>, Vec<_>) =
        (0..WATCHERS).map(|_| mpsc::channel(16)).unzip();
    group.bench_function(BenchmarkId::new("mpsc-floor", "try_send"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                for tx in &senders {
                    tx.try_send(event.clone()).expect("room");
                }
                total += started.elapsed();
                for rx in &mut receivers {
                    black_box(rx.try_recv().expect("sent"));
                }
            }
            total
        })
    });
    group.finish();
}

// The macros generate undocumented items.
#[allow(missing_docs)]
mod harness {
    use super::*;
    criterion_group!(benches, get_put, fan_out);
}
criterion_main!(harness::benches);
