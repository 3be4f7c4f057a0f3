//! The kv side of the benchmark: the point operations through `Store`, and the workloads only
//! kv offers on every backend (watch latency, locks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use kv::{LockOptions, Precondition, PutOptions, Store, WatchOptions};

use super::{Budget, OpResult, Sample, Target, measure, value};
use crate::output::{Failure, code};

/// The point operations through a kv store handle.
pub struct KvTarget(pub Arc<dyn Store>);

#[async_trait]
impl Target for KvTarget {
    async fn put(&self, key: &str, value: &[u8]) -> OpResult<u64> {
        self.0
            .put(key, value, PutOptions::default())
            .await
            .map_err(|e| e.to_string())
    }

    async fn get(&self, key: &str) -> OpResult<bool> {
        Ok(self.0.get(key).await.map_err(|e| e.to_string())?.is_some())
    }

    async fn exists(&self, key: &str) -> OpResult<bool> {
        self.0.exists(key).await.map_err(|e| e.to_string())
    }

    async fn list(&self, dir: &str) -> OpResult<usize> {
        Ok(self.0.list(dir).await.map_err(|e| e.to_string())?.len())
    }

    async fn delete(&self, key: &str) -> OpResult<()> {
        self.0
            .delete(key)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn cas(&self, key: &str, _previous: &[u8], value: &[u8], token: u64) -> OpResult<u64> {
        self.0
            .atomic_put(
                key,
                value,
                Precondition::Version(token),
                PutOptions::default(),
            )
            .await
            .map_err(|e| e.to_string())
    }

    async fn cleanup(&self, prefix: &str) -> OpResult<()> {
        self.0
            .delete_tree(prefix)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Put-to-event latency: one writer per task puts and waits for its own watch (on the key, or
/// on the directory it is in) to deliver that write.
pub async fn watch(
    store: Arc<dyn Store>,
    prefix: &str,
    tree: bool,
    concurrency: usize,
    budget: Budget,
    size: usize,
) -> Sample {
    let dir = format!(
        "{prefix}/watch-{}-c{concurrency}",
        if tree { "tree" } else { "key" }
    );
    let label = format!(
        "{} c={concurrency}",
        if tree { "watch_tree" } else { "watch" }
    );
    let mut streams = Vec::new();
    for task in 0..concurrency {
        let watched = if tree {
            format!("{dir}/{task}")
        } else {
            format!("{dir}/{task}/k")
        };
        let stream = if tree {
            store.watch_tree(&watched, WatchOptions::default()).await
        } else {
            store.watch(&watched, WatchOptions::default()).await
        };
        streams.push(stream.ok().map(tokio::sync::Mutex::new));
    }
    let streams = Arc::new(streams);
    measure(concurrency, budget, &label, move |task, i| {
        let (store, streams) = (store.clone(), streams.clone());
        let key = format!("{dir}/{task}/k");
        async move {
            let Some(stream) = &streams[task] else {
                return Err("the watch could not be opened".into());
            };
            let mut stream = stream.lock().await;
            let written = value(size, i);
            store
                .put(&key, &written, PutOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            loop {
                match stream.next().await {
                    Some(Ok(event)) if event.value[..] == written[..] => return Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("the watch ended".into()),
                }
            }
        }
    })
    .await
}

/// Acquire + release cycles on one lock by `concurrency` contenders (1: uncontended), checking
/// that no two holders ever overlap.
pub async fn lock(
    store: Arc<dyn Store>,
    prefix: &str,
    concurrency: usize,
    budget: Budget,
) -> Result<Sample, Failure> {
    let key = format!("{prefix}/lock-c{concurrency}");
    let inside = Arc::new(AtomicBool::new(false));
    let overlapped = Arc::new(AtomicBool::new(false));
    let label = format!("lock c={concurrency}");
    let (held, overlap) = (inside.clone(), overlapped.clone());
    let sample = measure(concurrency, budget, &label, move |_, _| {
        let (store, key, inside, overlapped) =
            (store.clone(), key.clone(), held.clone(), overlap.clone());
        async move {
            let lock = store
                .new_lock(&key, LockOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let guard = lock.acquire().await.map_err(|e| e.to_string())?;
            if inside.swap(true, Ordering::SeqCst) {
                overlapped.store(true, Ordering::SeqCst);
            }
            tokio::task::yield_now().await;
            inside.store(false, Ordering::SeqCst);
            guard.release().await.map_err(|e| e.to_string())
        }
    })
    .await;
    if overlapped.load(Ordering::SeqCst) {
        return Err(Failure::new(
            code::OTHER,
            format!("lock bench: two holders of {prefix}/lock-c{concurrency} overlapped"),
        ));
    }
    Ok(sample)
}
