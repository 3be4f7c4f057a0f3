//! Watches: a snapshot and the log position in one read transaction, then the log from there,
//! read again whenever the database changed — at once for writes of this handle, and within
//! the poll interval (`PRAGMA data_version`) for writes of other connections and processes.

use std::sync::Arc;

use bytes::Bytes;
use kv_core::backend::{WatchSender, watch_channel};
use kv_core::{Error, EventKind, Key, Result, WatchEvent, WatchOptions, WatchStream, covers};

use crate::Inner;
use crate::db::{self, DELETE, LOCK, floor_and_revision, now_ms, read_covered, read_key, read_log};

/// Log records read per batch.
const BATCH: usize = 512;

/// Opens a watch on `path` (a key, or with `tree` a prefix).
pub(crate) async fn open(
    inner: Arc<Inner>,
    path: &str,
    options: WatchOptions,
) -> Result<WatchStream> {
    let tree = options.tree;
    inner.capabilities.check_watch(&options)?;
    let owned = path.to_owned();
    let since = options.since;
    let (initial, position) = inner
        .db
        .run(move |conn| {
            let tx = conn.transaction().map_err(|e| db::sql_error("watch", e))?;
            let (floor, revision) =
                floor_and_revision(&tx).map_err(|e| db::sql_error("watch", e))?;
            if let Some(since) = since {
                if since < floor {
                    return Err(Error::Compacted {
                        requested: since,
                        oldest: floor + 1,
                    });
                }
                return Ok((Vec::new(), since));
            }
            let now = now_ms();
            let pairs = if tree {
                read_covered(&tx, &owned, now)
            } else {
                read_key(&tx, &owned, now).map(|found| {
                    found
                        .map(|(value, version)| kv_core::KvPair {
                            key: Key::from_normalized(&owned),
                            value: Bytes::from(value),
                            version,
                        })
                        .into_iter()
                        .collect()
                })
            }
            .map_err(|e| db::sql_error("watch", e))?;
            let events = pairs
                .into_iter()
                .map(|pair| WatchEvent {
                    kind: EventKind::Put,
                    key: pair.key,
                    value: pair.value,
                    version: pair.version,
                })
                .collect();
            Ok((events, revision))
        })
        .await?;
    let (sender, stream) = watch_channel(initial, path, &options);
    let tail = Tail {
        inner,
        path: path.to_owned(),
        tree,
        position,
        resuming: since.is_some(),
    };
    tokio::spawn(tail.run(sender));
    Ok(stream)
}

struct Tail {
    inner: Arc<Inner>,
    path: String,
    tree: bool,
    /// The last revision read from the log.
    position: u64,
    /// Resuming with `since` and nothing read yet: trimmed records mean compaction, not lag.
    resuming: bool,
}

impl Tail {
    async fn run(mut self, mut sender: WatchSender) {
        let mut changed = self.inner.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let after = self.position;
            let read = self
                .inner
                .db
                .run(move |conn| {
                    let tx = conn.transaction().map_err(|e| db::sql_error("watch", e))?;
                    let (floor, _) =
                        floor_and_revision(&tx).map_err(|e| db::sql_error("watch", e))?;
                    let records =
                        read_log(&tx, after, BATCH).map_err(|e| db::sql_error("watch", e))?;
                    Ok((floor, records))
                })
                .await;
            let (floor, records) = match read {
                Ok(read) => read,
                Err(error) => return sender.fail(error),
            };
            if floor > self.position {
                return sender.fail(if self.resuming {
                    Error::Compacted {
                        requested: self.position,
                        oldest: floor + 1,
                    }
                } else {
                    Error::WatchLagged {
                        buffer: usize::try_from(self.inner.db.settings.history)
                            .unwrap_or(usize::MAX),
                    }
                });
            }
            self.resuming = false;
            let full = records.len() >= BATCH;
            for (revision, key, kind, value) in records {
                self.position = revision;
                if kind == LOCK {
                    continue;
                }
                let concerned = if self.tree {
                    covers(&self.path, &key)
                } else {
                    key == self.path
                };
                if !concerned {
                    continue;
                }
                let (kind, value) = if kind == DELETE {
                    (EventKind::Delete, Bytes::new())
                } else {
                    (EventKind::Put, Bytes::from(value))
                };
                let event = WatchEvent {
                    kind,
                    key: Key::from_normalized(&key),
                    value,
                    version: revision,
                };
                if !sender.send(event) {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = self.inner.closed.cancelled() => return sender.fail(Error::Closed),
                _ = sender.closed() => return,
                outcome = changed.changed() => {
                    if outcome.is_err() {
                        return sender.fail(Error::Closed);
                    }
                }
            }
        }
    }
}
