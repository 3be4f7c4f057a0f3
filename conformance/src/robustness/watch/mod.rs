//! Watchers and their checker: every change delivered in order, once, with no gap against the
//! write history, resumable from a version, and never silent.
//!
//! A watcher follows the clients' keys with `watch_tree` (or one key with `watch`) and, when
//! its watch ends with an
//! error a service would retry (`Unavailable`, `WatchLagged`), resumes it with `since` = the
//! last version it saw, as a service would; a `Compacted` or other error ends it. Each run of
//! one underlying watch is a *segment*. The checks ([`check`]):
//! - every event names a write that was made (its value) at the version the write was
//!   acknowledged with; never one that failed saying nothing was applied;
//! - versions increase: per key strictly, across the stream never backwards (a tree watch
//!   resumed after version V skips every change up to V, so it must deliver in version order);
//! - no gaps (backends that do not coalesce): a segment resumed after version S holds every
//!   acknowledged write with a version in (S, last version it delivered]; a segment started
//!   "from now" every acknowledged write invoked after the watch was ready, up to its last
//!   version; and between two consecutive puts of a key, a Delete event whenever a delete of the
//!   key was acknowledged entirely between the two writes;
//! - two watchers agree on every version both covered;
//! - never silent: after the traffic, one more write (the *sentinel*) must reach every tree
//!   watcher within the liveness bound, or the watcher must have ended with an error; and then
//!   each key's last event agrees with the key's final state (a key watcher's, its key's, within
//!   the same bound).
//!
//! A key watcher is held to the same rules for its key alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kv_core::{Error, EventKind, Store, WatchOptions};

use super::history::{Call, Op, Outcome};

mod check;

pub use check::{Final, check};

/// The key of the write made after the traffic, which every watcher must deliver.
pub const SENTINEL: &str = "r/end";

/// How long after the sentinel write every watcher must have delivered it (or ended).
pub const LIVENESS_BOUND: Duration = Duration::from_secs(20);

/// One delivered change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// When it was received (ns since the run began).
    pub at: u64,
    /// `true` for a put, `false` for a delete.
    pub put: bool,
    /// The key.
    pub key: String,
    /// The value (empty for a delete).
    pub value: String,
    /// Its version.
    pub version: u64,
    /// Part of the initial state of a watch started "from now" (before its Synced marker).
    pub initial: bool,
}

/// One underlying watch: how it started, what it delivered, how it ended.
#[derive(Debug, Clone, Default)]
pub struct Segment {
    /// Resumed after this version; `None`: started from the current state.
    pub since: Option<u64>,
    /// When the watch call returned (ns since the run began).
    pub ready: u64,
    /// What it delivered.
    pub events: Vec<Seen>,
    /// The error it ended with, if it did.
    pub error: Option<String>,
}

/// What one watcher saw, segment by segment.
#[derive(Debug, Clone, Default)]
pub struct WatchLog {
    /// Which watcher.
    pub watcher: usize,
    /// The key it watches with `watch`; `None` for a `watch_tree` of every key.
    pub key: Option<String>,
    /// Its segments in order.
    pub segments: Vec<Segment>,
    /// Why it stopped for good, if it did before the end (an error it could not resume from).
    pub ended: Option<String>,
}

impl WatchLog {
    /// True if its last event for `key` says what `state` says (a put of that value at that
    /// version, or a delete for an absent key).
    pub fn agrees(&self, key: &str, state: &Option<(String, u64)>) -> bool {
        let last = self.events().filter(|e| e.key == key).last();
        match (state, last) {
            (Some((value, version)), Some(e)) => {
                e.put && &e.value == value && e.version == *version
            }
            (Some(_), None) => false,
            (None, Some(e)) => !e.put,
            (None, None) => true,
        }
    }

    fn last_version(&self) -> Option<u64> {
        self.segments
            .iter()
            .flat_map(|s| s.events.iter())
            .map(|e| e.version)
            .max()
    }

    /// Every event, in delivery order.
    pub fn events(&self) -> impl Iterator<Item = &Seen> {
        self.segments.iter().flat_map(|s| s.events.iter())
    }

    /// The log as JSON lines, one per event or segment boundary.
    pub fn json(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push_str(&format!(
                "{{\"watcher\":{},\"segment\":{{\"since\":{},\"ready_ns\":{}}}}}\n",
                self.watcher,
                segment.since.map_or("null".into(), |s| s.to_string()),
                segment.ready
            ));
            for e in &segment.events {
                out.push_str(&format!(
                    "{{\"watcher\":{},\"at_ns\":{},\"kind\":\"{}\",\"key\":\"{}\",\"value\":\"{}\",\"version\":{},\"initial\":{}}}\n",
                    self.watcher,
                    e.at,
                    if e.put { "put" } else { "delete" },
                    e.key,
                    e.value,
                    e.version,
                    e.initial
                ));
            }
            if let Some(error) = &segment.error {
                out.push_str(&format!(
                    "{{\"watcher\":{},\"error\":{:?}}}\n",
                    self.watcher, error
                ));
            }
        }
        out
    }
}

/// Watches `prefix` on `store` (the key `prefix` alone with `single`) from `start` (resuming
/// after errors, see the module doc) until `stop` says so; the log is kept in `log` as it
/// grows.
#[allow(clippy::too_many_arguments)]
pub async fn watcher(
    store: Arc<dyn Store>,
    prefix: String,
    single: bool,
    start: Option<u64>,
    began: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
    log: Arc<Mutex<WatchLog>>,
) {
    let history = store.capabilities().watch_history;
    let at = || began.elapsed().as_nanos() as u64;
    let mut since = start;
    let lock = || log.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if *stop.borrow() {
            return;
        }
        let options = match since {
            Some(version) => WatchOptions::default().since(version),
            None => WatchOptions::default().synced(),
        };
        let watch = match single {
            true => store.watch(&prefix, options).await,
            false => store.watch_tree(&prefix, options).await,
        };
        let mut stream = match watch {
            Ok(stream) => stream,
            // History no longer kept: start again from the current state, as a service would.
            Err(Error::Compacted { .. }) if since.is_some() => {
                since = None;
                continue;
            }
            Err(e) if resumable(&e) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => {
                lock().ended = Some(format!("could not start: {e}"));
                return;
            }
        };
        let mut initial = since.is_none();
        lock().segments.push(Segment {
            since,
            ready: at(),
            ..Segment::default()
        });
        let error = loop {
            let mut stop = stop.clone();
            let next = tokio::select! {
                next = stream.next() => next,
                _ = stop.wait_for(|s| *s) => return,
            };
            match next {
                Some(Ok(event)) if event.kind == EventKind::Synced => initial = false,
                Some(Ok(event)) => {
                    let seen = Seen {
                        at: at(),
                        put: event.kind == EventKind::Put,
                        key: event.key.as_str().to_owned(),
                        value: String::from_utf8_lossy(&event.value).into_owned(),
                        version: event.version,
                        initial,
                    };
                    lock()
                        .segments
                        .last_mut()
                        .expect("a segment")
                        .events
                        .push(seen);
                }
                Some(Err(e)) => break e,
                None => break Error::unavailable("the watch stream ended without an error", None),
            }
        };
        let mut log = lock();
        log.segments.last_mut().expect("a segment").error = Some(format!("{error}"));
        if !history || !resumable(&error) {
            log.ended = Some(format!("{error}"));
            return;
        }
        // Resume after the last version seen; with nothing seen yet, from the current state.
        since = log.last_version().or(since);
    }
}

fn resumable(error: &Error) -> bool {
    matches!(
        error,
        Error::Unavailable { .. } | Error::WatchLagged { .. } | Error::Timeout { .. }
    )
}
