//! Reclaiming the guards of emptied keys, once no write in flight can need them.
//!
//! A write that checks a key's state guards itself with data versions: the key's epoch node
//! (default layout) or its own node (native layout). ZooKeeper restarts a node's data version
//! when the node is created again, so such a guard must not be deleted while a write that read
//! it may still land: a key's delete leaves it (the epoch node stays; a native key's node is
//! emptied and marked hollow), and this reclaimer removes it later. It first *observes* the
//! key (no value, guard at version `v`), then waits `reclaim_after` and deletes the guard only
//! if still at `v`. Every write that read the key with a value read it before that
//! observation (a value created since would have changed `v`), and a session cannot hold a
//! write longer than its timeout: by then each has landed or failed. A write that read the key
//! empty creates its value node exclusively, so a new key under the same path cannot fool it.
//!
//! Keys are queued by the deletes of this handle, by the end of its leases and by the lists
//! that walk past emptied keys (which also collect what a closed or crashed handle left);
//! a closed handle drops its queue.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::Inner;
use crate::layout::hollow_mark;

/// `reclaim_after` unless the URL says otherwise (at least twice the session timeout plus the
/// call timeout): above ZooKeeper's default largest session timeout (40 s).
pub(crate) const DEFAULT_AFTER: Duration = Duration::from_secs(60);
/// Keys queued at most; more are left to the next list that walks past them.
const MAX_QUEUED: usize = 100_000;

/// A key seen empty, its guard's versions, and when it may go.
struct Seen {
    due: Instant,
    key: String,
    /// The epoch node's version, or in the native layout the node's.
    version: i32,
    /// The native layout's hollow marker version.
    marker: i32,
}

#[derive(Default)]
struct Queue {
    /// Keys to observe.
    fresh: VecDeque<String>,
    /// Keys observed empty, oldest first.
    seen: VecDeque<Seen>,
    /// Every key in either queue.
    queued: HashSet<String>,
}

/// The queue of one store handle.
pub(crate) struct Reclaimer {
    after: Duration,
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Reclaimer {
    /// A reclaimer that waits `after` between seeing a key empty and removing its guard.
    pub fn new(after: Duration) -> Reclaimer {
        Reclaimer {
            after,
            queue: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// Queues a key that may now be empty (it is checked before anything is removed).
    pub fn schedule(&self, key: &str) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.queued.len() >= MAX_QUEUED || !queue.queued.insert(key.to_owned()) {
            return;
        }
        queue.fresh.push_back(key.to_owned());
        drop(queue);
        self.wake.notify_one();
    }

    /// Wakes the task (to find the handle gone).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Keys to observe, and observed keys now due.
    fn take(&self) -> (Vec<String>, Vec<Seen>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let fresh: Vec<String> = queue.fresh.drain(..).collect();
        let now = Instant::now();
        let due = queue.seen.iter().take_while(|s| s.due <= now).count();
        let due: Vec<Seen> = queue.seen.drain(..due).collect();
        (fresh, due)
    }

    fn done<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            queue.queued.remove(key);
        }
    }

    /// Keys observed empty: they wait their turn.
    fn wait_for(&self, seen: Vec<Seen>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.seen.extend(seen);
    }

    fn next_due(&self) -> Option<Instant> {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.seen.front().map(|s| s.due)
    }
}

/// Runs the reclaimer of a store handle until the handle is closed or dropped (dropping
/// [`Inner`] wakes it).
pub(crate) fn spawn(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let reclaimer = inner.reclaimer.clone();
    let closed = (*inner.closed).clone();
    tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            round(&inner).await;
            drop(inner);
            let wait = async {
                match reclaimer.next_due() {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = closed.cancelled() => return,
                _ = wait => {}
                _ = reclaimer.wake.notified() => {}
            }
        }
    });
}

/// Observes the fresh keys and removes the guards of the due ones.
async fn round(inner: &Inner) {
    let (fresh, due) = inner.reclaimer.take();
    if fresh.is_empty() && due.is_empty() {
        return;
    }
    let Ok(client) = inner.client().await else {
        inner.reclaimer.done(fresh.iter().map(String::as_str));
        inner.reclaimer.done(due.iter().map(|s| s.key.as_str()));
        return;
    };
    let seen = observe(inner, &client, &fresh).await;
    let kept: HashSet<&str> = seen.iter().map(|s| s.key.as_str()).collect();
    let dropped = fresh
        .iter()
        .map(String::as_str)
        .filter(|k| !kept.contains(k));
    inner.reclaimer.done(dropped);
    inner.reclaimer.wait_for(seen);
    let reclaimed = futures::future::join_all(due.iter().map(|s| reclaim(inner, &client, s)));
    reclaimed.await;
    inner.reclaimer.done(due.iter().map(|s| s.key.as_str()));
}

/// The keys among `keys` that are empty with a guard to remove, as seen now. Empty keys
/// without a guard (written before epochs existed) have their directories pruned at once.
async fn observe(inner: &Inner, client: &zk::Client, keys: &[String]) -> Vec<Seen> {
    let layout = &inner.layout;
    let paths: Vec<String> = keys
        .iter()
        .flat_map(|key| match layout.native() {
            true => vec![layout.dir(key), layout.hollow_marker(key)],
            false => vec![
                layout.epoch(key),
                layout.value(key, false),
                layout.value(key, true),
            ],
        })
        .collect();
    let Ok(read) = crate::batch::read_many(inner, client, &paths, false).await else {
        return Vec::new();
    };
    let per_key = if layout.native() { 2 } else { 3 };
    let due = Instant::now() + inner.reclaimer.after;
    let mut seen = Vec::new();
    let mut prune = Vec::new();
    for (key, found) in keys.iter().zip(read.chunks(per_key)) {
        let stat = |i: usize| match &found[i] {
            zk::MultiReadResult::Data { data, stat } => Some((data, *stat)),
            _ => None,
        };
        let absent = |i: usize| {
            matches!(
                found[i],
                zk::MultiReadResult::Error {
                    err: zk::Error::NoNode
                }
            )
        };
        if layout.native() {
            // Hollow, without children: the node and its marker go together.
            if let (Some((data, node)), Some((mark, marker))) = (stat(0), stat(1))
                && data.is_empty()
                && node.num_children == 0
                && *mark == hollow_mark(&node)
            {
                seen.push(Seen {
                    due,
                    key: key.clone(),
                    version: node.version,
                    marker: marker.version,
                });
            }
            continue;
        }
        if !(absent(1) && absent(2)) {
            continue;
        }
        match stat(0) {
            Some((_, epoch)) => seen.push(Seen {
                due,
                key: key.clone(),
                version: epoch.version,
                marker: 0,
            }),
            None if absent(0) => prune.push(layout.dir(key)),
            None => {}
        }
    }
    futures::future::join_all(prune.into_iter().map(|dir| inner.prune(client, dir))).await;
    seen
}

/// Removes a key's guard if it is still at the version observed, then its empty parents.
async fn reclaim(inner: &Inner, client: &zk::Client, seen: &Seen) {
    let layout = &inner.layout;
    let mut multi = client.new_multi_writer();
    let added = match layout.native() {
        true => multi
            .add_delete(&layout.dir(&seen.key), Some(seen.version))
            .and_then(|()| multi.add_delete(&layout.hollow_marker(&seen.key), Some(seen.marker))),
        false => multi.add_delete(&layout.epoch(&seen.key), Some(seen.version)),
    };
    if added.is_err() {
        return;
    }
    if let Ok(Ok(_)) = crate::timed_raw("reclaim", inner.timeout, multi.commit()).await {
        let dir = layout.dir(&seen.key);
        let parent = match layout.native() {
            true => dir[..dir.rfind('/').unwrap_or(0)].to_owned(),
            false => dir,
        };
        inner.prune(client, parent).await;
    }
}
