//! `kvctl bench`: each operation against one shared handle, at each concurrency, through kv
//! (`--impl kv`) and through the backend's own client crate (`--impl raw`, the baseline), one
//! JSON line per result. The raw workloads live in one file per backend, each op written the
//! way a hand-rolled client would, with the kv call it mirrors named beside it.

mod kv_target;
mod raw_consul;
mod raw_etcd;
mod raw_redis;
mod raw_sled;
mod raw_sqlite;
mod raw_zookeeper;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use kv::StoreUrl;
use serde_json::json;

use crate::cli::{BenchArgs, BenchImpl, BenchOp};
use crate::output::{Failure, Printer, code};

/// What a workload's operation failed with (counted, not fatal).
pub type OpResult<T> = Result<T, String>;

/// One implementation of the point operations: kv, or a backend's raw client.
#[async_trait]
pub trait Target: Send + Sync {
    /// Writes a value; returns the token the next `cas` needs (a version, or 0).
    async fn put(&self, key: &str, value: &[u8]) -> OpResult<u64>;
    /// Reads a value; whether it existed.
    async fn get(&self, key: &str) -> OpResult<bool>;
    /// Whether the key exists.
    async fn exists(&self, key: &str) -> OpResult<bool>;
    /// Lists every key under a directory; how many.
    async fn list(&self, dir: &str) -> OpResult<usize>;
    /// Deletes a key.
    async fn delete(&self, key: &str) -> OpResult<()>;
    /// Writes `value` only if the key is still as this task last wrote it (`previous`, with
    /// `token` from the last write); returns the new token.
    async fn cas(&self, key: &str, previous: &[u8], value: &[u8], token: u64) -> OpResult<u64>;
    /// The token a `cas` of `key` needs now (untimed setup), if `put` did not return it.
    async fn token(&self, _key: &str) -> OpResult<u64> {
        Ok(0)
    }
    /// Removes everything under `prefix`.
    async fn cleanup(&self, prefix: &str) -> OpResult<()>;
}

/// Latencies of one run.
struct Sample {
    micros: Vec<u32>,
    errors: u64,
    elapsed: Duration,
}

impl Sample {
    fn percentile(&self, p: f64) -> u32 {
        if self.micros.is_empty() {
            return 0;
        }
        let at = ((self.micros.len() - 1) as f64 * p).round() as usize;
        self.micros[at]
    }
}

/// The bench's watchdog, started by [`run`].
static WATCHDOG: std::sync::OnceLock<Watchdog> = std::sync::OnceLock::new();

/// Ends the process when no operation has finished for `stall`: on an OS thread of its own,
/// because a store that deadlocks can hold the runtime's worker threads.
struct Watchdog {
    /// Milliseconds since `started` at the last finished operation (or start of a run).
    last: Arc<AtomicU64>,
    /// What runs now, for the report.
    running: Arc<std::sync::Mutex<String>>,
    started: Instant,
}

impl Watchdog {
    fn start(stall: Duration, json: bool) -> Watchdog {
        let watchdog = Watchdog {
            last: Arc::new(AtomicU64::new(0)),
            running: Arc::new(std::sync::Mutex::new("setup".to_owned())),
            started: Instant::now(),
        };
        let (last, running, started) = (
            watchdog.last.clone(),
            watchdog.running.clone(),
            watchdog.started,
        );
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let idle = started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if idle < stall {
                    continue;
                }
                let running = running.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let message = format!(
                    "no operation finished for {} during {running}: the store hung (raise --stall \
                     if it is only slow)",
                    humantime::format_duration(stall)
                );
                if json {
                    println!(
                        "{}",
                        json!({"error": message, "kind": "hung", "exit_code": code::OTHER})
                    );
                }
                eprintln!("kvctl: bench: {message}");
                std::process::exit(code::OTHER);
            }
        });
        watchdog
    }

    /// Records progress (an operation finished, or a run began).
    fn alive(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn running(&self, what: String) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = what;
        self.alive();
    }
}

/// How long, or how many operations, each measurement runs.
#[derive(Clone, Copy)]
struct Budget {
    duration: Duration,
    ops: Option<u64>,
}

/// Runs `op` from `concurrency` tasks until the budget is spent; `op(task, i)` is the i-th
/// call of a task.
async fn measure<F, Fut>(concurrency: usize, budget: Budget, label: &str, op: F) -> Sample
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = OpResult<()>> + Send,
{
    let watchdog = WATCHDOG.get();
    if let Some(watchdog) = watchdog {
        watchdog.running(label.to_owned());
    }
    let op = Arc::new(op);
    let started = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(label, budget);
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let (op, issued) = (op.clone(), issued.clone());
            tokio::spawn(async move {
                let (mut micros, mut errors) = (Vec::new(), 0u64);
                for i in 0.. {
                    if started.elapsed() >= budget.duration {
                        break;
                    }
                    if let Some(max) = budget.ops
                        && issued.fetch_add(1, Ordering::Relaxed) >= max
                    {
                        break;
                    }
                    let begun = Instant::now();
                    match op(task, i).await {
                        Ok(()) => micros
                            .push(u32::try_from(begun.elapsed().as_micros()).unwrap_or(u32::MAX)),
                        Err(_) => errors += 1,
                    }
                    if let Some(watchdog) = watchdog {
                        watchdog.alive();
                    }
                }
                (micros, errors)
            })
        })
        .collect();
    let mut sample = Sample {
        micros: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        if let Ok((micros, errors)) = task.await {
            sample.micros.extend(micros);
            sample.errors += errors;
        }
    }
    sample.elapsed = started.elapsed();
    progress.stop();
    sample.micros.sort_unstable();
    sample
}

/// A one-line progress indicator on stderr (on a terminal, for runs over a second).
struct Progress {
    done: Arc<AtomicBool>,
}

impl Progress {
    fn start(label: &str, budget: Budget) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        if std::io::stderr().is_terminal() && budget.duration > Duration::from_secs(1) {
            let (done, label, total) = (done.clone(), label.to_owned(), budget.duration);
            let started = Instant::now();
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let part = (started.elapsed().as_secs_f64() / total.as_secs_f64()).min(1.0);
                    let bar = "#".repeat((part * 30.0) as usize);
                    eprint!("\r{label:<28} [{bar:<30}] {:>3.0}%", part * 100.0);
                    let _ = std::io::stderr().flush();
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                eprint!("\r{:<70}\r", "");
            });
        }
        Progress { done }
    }

    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// One result line.
struct Row {
    implementation: &'static str,
    backend: String,
    op: &'static str,
    concurrency: usize,
    sample: Sample,
}

impl Row {
    fn ops_per_s(&self) -> f64 {
        self.sample.micros.len() as f64 / self.sample.elapsed.as_secs_f64().max(1e-9)
    }

    fn print(&self, out: &Printer) {
        let ops = self.ops_per_s();
        out.emit(
            json!({
                "impl": self.implementation,
                "backend": self.backend,
                "op": self.op,
                "n": self.sample.micros.len(),
                "concurrency": self.concurrency,
                "ops_per_s": (ops * 10.0).round() / 10.0,
                "p50_us": self.sample.percentile(0.50),
                "p99_us": self.sample.percentile(0.99),
                "errors": self.sample.errors,
            }),
            || {
                format!(
                    "{:<4} {:<10} {:<11} {:>4} {:>8} {:>11.1} {:>8} {:>8} {:>6}",
                    self.implementation,
                    self.backend,
                    self.op,
                    self.concurrency,
                    self.sample.micros.len(),
                    ops,
                    self.sample.percentile(0.50),
                    self.sample.percentile(0.99),
                    self.sample.errors
                )
            },
        );
    }
}

/// The value written by call `i`: `size` bytes, the last 8 of them `i` (so each differs).
fn value(size: usize, i: u64) -> Vec<u8> {
    let mut v = vec![b'x'; size.max(8)];
    let at = v.len() - 8;
    v[at..].copy_from_slice(&i.to_be_bytes());
    v
}

/// A prepared point operation: `op(task, i)` runs the i-th call of a task.
type PreparedOp = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, OpResult<()>> + Send + Sync>;

/// One implementation under test.
struct Implementation {
    name: &'static str,
    target: Arc<dyn Target>,
    store: Option<Arc<dyn kv::Store>>,
}

/// Adds a round's sample to the total.
fn merge(total: &mut Option<Sample>, sample: Sample) {
    match total {
        None => *total = Some(sample),
        Some(total) => {
            total.micros.extend(sample.micros);
            total.errors += sample.errors;
            total.elapsed += sample.elapsed;
        }
    }
}

/// Runs `kvctl bench`.
pub async fn run(url: &str, args: &BenchArgs, out: &Printer) -> Result<u8, Failure> {
    let parsed = StoreUrl::parse(url)?;
    let backend = kv::driver(&parsed)?.name().to_owned();
    let run_id = format!("kvbench-{:08x}", fastrand::u32(..));
    if let Some(watchdog) = WATCHDOG.get() {
        watchdog.running("setup".to_owned());
    } else {
        let _ = WATCHDOG.set(Watchdog::start(args.stall, out.json()));
    }
    if !out.json() {
        out.emit(json!({}), || {
            format!(
                "{:<4} {:<10} {:<11} {:>4} {:>8} {:>11} {:>8} {:>8} {:>6}",
                "impl", "backend", "op", "conc", "n", "ops/s", "p50_us", "p99_us", "errors"
            )
        });
    }
    let mut implementations = Vec::new();
    if matches!(args.implementation, BenchImpl::Raw | BenchImpl::Both) {
        implementations.push(Implementation {
            name: "raw",
            target: raw_target(&parsed).await?,
            store: None,
        });
    }
    if matches!(args.implementation, BenchImpl::Kv | BenchImpl::Both) {
        let store = kv::open(url).await?;
        implementations.push(Implementation {
            name: "kv",
            target: Arc::new(kv_target::KvTarget(store.clone())),
            store: Some(store),
        });
    }
    // Each measurement is split into rounds that alternate which implementation goes first,
    // so that a server warming up or filling up does not favour one of them.
    let rounds = args.rounds.max(1);
    for op in &args.ops {
        for &concurrency in &args.concurrency {
            let mut totals: Vec<Option<Sample>> = implementations.iter().map(|_| None).collect();
            let kv_only = matches!(op, BenchOp::Watch | BenchOp::WatchTree | BenchOp::Lock);
            let mut prepared = Vec::new();
            for implementation in &implementations {
                let prefix = format!("{run_id}/{}", implementation.name);
                prepared.push(match (kv_only, &implementation.store) {
                    (true, _) => None,
                    (false, _) => Some(
                        prepare(
                            implementation.target.clone(),
                            *op,
                            &prefix,
                            concurrency,
                            args,
                        )
                        .await?,
                    ),
                });
            }
            // A delete run removes the prefilled keys once: no rounds.
            let rounds = if *op == BenchOp::Delete || kv_only {
                1
            } else {
                rounds
            };
            let budget = Budget {
                duration: args.duration / rounds,
                ops: args.ops_count.map(|n| n.div_ceil(rounds as u64)),
            };
            for round in 0..rounds {
                for index in 0..implementations.len() {
                    let index = if round % 2 == 0 {
                        index
                    } else {
                        implementations.len() - 1 - index
                    };
                    let implementation = &implementations[index];
                    let label = format!("{} {} c={concurrency}", implementation.name, op.name());
                    let prefix = format!("{run_id}/{}", implementation.name);
                    let sample = match (&prepared[index], &implementation.store) {
                        (Some(prepared), _) => {
                            let prepared = prepared.clone();
                            let budget = if *op == BenchOp::Delete {
                                Budget {
                                    ops: Some(budget.ops.map_or(args.keys.max(1) as u64, |n| {
                                        n.min(args.keys.max(1) as u64)
                                    })),
                                    ..budget
                                }
                            } else {
                                budget
                            };
                            measure(concurrency, budget, &label, move |task, i| {
                                prepared(task, i)
                            })
                            .await
                        }
                        (None, Some(store)) => match op {
                            BenchOp::Watch | BenchOp::WatchTree => {
                                let tree = *op == BenchOp::WatchTree;
                                kv_target::watch(
                                    store.clone(),
                                    &prefix,
                                    tree,
                                    concurrency,
                                    budget,
                                    args.value_size,
                                )
                                .await
                            }
                            _ => {
                                kv_target::lock(store.clone(), &prefix, concurrency, budget).await?
                            }
                        },
                        (None, None) => continue,
                    };
                    merge(&mut totals[index], sample);
                }
            }
            for (implementation, total) in implementations.iter().zip(totals) {
                if let Some(mut sample) = total {
                    sample.micros.sort_unstable();
                    Row {
                        implementation: implementation.name,
                        backend: backend.clone(),
                        op: op.name(),
                        concurrency,
                        sample,
                    }
                    .print(out);
                }
            }
        }
    }
    for implementation in implementations {
        implementation
            .target
            .cleanup(&run_id)
            .await
            .map_err(|e| Failure::new(code::OTHER, format!("cleanup failed: {e}")))?;
        if let Some(store) = implementation.store {
            store.close().await?;
        }
    }
    Ok(0)
}

/// The raw client for a URL's backend.
async fn raw_target(url: &StoreUrl) -> Result<Arc<dyn Target>, Failure> {
    let unsupported = |why: &str| Failure::new(code::USAGE, why.to_owned());
    let secure = matches!(
        url.scheme.as_str(),
        "etcds" | "rediss" | "consuls" | "zookeepers"
    ) || url.bool_option("tls").ok().flatten() == Some(true);
    if secure {
        return Err(unsupported(
            "--impl raw connects without TLS; bench the raw baseline on a plain endpoint",
        ));
    }
    let target: Arc<dyn Target> = match url.scheme.as_str() {
        "etcd" => Arc::new(raw_etcd::RawEtcd::connect(url).await?),
        "redis" => Arc::new(raw_redis::RawRedis::connect(url).await?),
        "consul" => Arc::new(raw_consul::RawConsul::connect(url)?),
        "zookeeper" => Arc::new(raw_zookeeper::RawZooKeeper::connect(url).await?),
        "sled" => Arc::new(raw_sled::RawSled::open()?),
        "sqlite" => Arc::new(raw_sqlite::RawSqlite::open()?),
        other => {
            return Err(unsupported(&format!(
                "no raw baseline for {other}:// (memory's baseline is the criterion bench)"
            )));
        }
    };
    Ok(target)
}

/// Writes what a point operation needs (untimed) and returns the operation to measure.
async fn prepare(
    target: Arc<dyn Target>,
    op: BenchOp,
    prefix: &str,
    concurrency: usize,
    args: &BenchArgs,
) -> Result<PreparedOp, Failure> {
    let size = args.value_size;
    let dir = format!("{prefix}/{}-c{concurrency}", op.name());
    let setup = |e: String| Failure::new(code::OTHER, format!("bench setup failed: {e}"));
    let keys = args.keys.max(1) as u64;
    let key_of =
        move |dir: &str, task: usize, i: u64| format!("{dir}/{}", (task as u64 * 7919 + i) % keys);
    match op {
        BenchOp::Get | BenchOp::Exists | BenchOp::Delete => {
            for k in 0..keys {
                target
                    .put(&format!("{dir}/{k}"), &value(size, 0))
                    .await
                    .map_err(setup)?;
            }
        }
        BenchOp::List => {
            for k in 0..100 {
                target
                    .put(&format!("{dir}/{k:03}"), &value(size, 0))
                    .await
                    .map_err(setup)?;
            }
        }
        _ => {}
    }
    Ok(match op {
        BenchOp::Put => Arc::new(move |task, i| {
            let (target, key) = (target.clone(), key_of(&dir, task, i));
            Box::pin(async move { target.put(&key, &value(size, i)).await.map(drop) })
        }),
        BenchOp::Get | BenchOp::Exists => {
            let exists = op == BenchOp::Exists;
            Arc::new(move |task, i| {
                let (target, key) = (target.clone(), key_of(&dir, task, i));
                Box::pin(async move {
                    let found = if exists {
                        target.exists(&key).await?
                    } else {
                        target.get(&key).await?
                    };
                    if found {
                        Ok(())
                    } else {
                        Err(format!("{key} is missing"))
                    }
                })
            })
        }
        BenchOp::List => Arc::new(move |_, _| {
            let (target, dir) = (target.clone(), dir.clone());
            Box::pin(async move {
                match target.list(&dir).await? {
                    100 => Ok(()),
                    n => Err(format!("listed {n} keys, not 100")),
                }
            })
        }),
        BenchOp::Delete => {
            // Each prefilled key once, whichever task gets to it (the run stops after `keys`).
            let next = Arc::new(AtomicU64::new(0));
            Arc::new(move |_, _| {
                let key = format!("{dir}/{}", next.fetch_add(1, Ordering::Relaxed) % keys);
                let target = target.clone();
                Box::pin(async move { target.delete(&key).await })
            })
        }
        BenchOp::Cas => {
            // One key per task: each cas builds on the task's previous write.
            let mut state = Vec::new();
            for task in 0..concurrency {
                let key = format!("{dir}/{task}");
                let mut token = target.put(&key, &value(size, 0)).await.map_err(setup)?;
                if token == 0 {
                    token = target.token(&key).await.map_err(setup)?;
                }
                state.push(tokio::sync::Mutex::new((0u64, token)));
            }
            let state = Arc::new(state);
            Arc::new(move |task, _| {
                let (target, state) = (target.clone(), state.clone());
                let key = format!("{dir}/{task}");
                Box::pin(async move {
                    let mut last = state[task].lock().await;
                    let (written, token) = *last;
                    let next = target
                        .cas(
                            &key,
                            &value(size, written),
                            &value(size, written + 1),
                            token,
                        )
                        .await?;
                    *last = (written + 1, next);
                    Ok(())
                })
            })
        }
        BenchOp::Watch | BenchOp::WatchTree | BenchOp::Lock => unreachable!("kv only"),
    })
}
