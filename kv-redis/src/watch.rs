//! Watches: an atomic snapshot with the log position, then the log (a stream) from there.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kv_core::backend::{WatchSender, resume_watch, watch_channel};
use kv_core::{Error, EventKind, Key, Result, WatchEvent, WatchOptions, WatchStream, covers};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::{Inner, scripts};

/// How long one `XREAD` blocks before the reader checks whether it should stop.
const BLOCK: Duration = Duration::from_millis(500);
/// A stored pair as the scripts return it: key, value, version.
type Stored = (String, Vec<u8>, u64);

/// Records read per batch.
const BATCH: usize = 512;

/// Opens a watch on `path` (a key, or with `tree` a prefix).
pub(crate) async fn open(
    inner: Arc<Inner>,
    path: &str,
    options: WatchOptions,
) -> Result<WatchStream> {
    let tree = options.tree;
    inner.capabilities.check_watch(&options)?;
    let mut snapshot_epoch = None;
    let (initial, from) = match options.since {
        Some(since) => {
            let floor = trimmed_through(&inner).await?;
            if since < floor {
                return Err(Error::Compacted {
                    requested: since,
                    oldest: floor + 1,
                });
            }
            (Vec::new(), format!("{since}-18446744073709551615"))
        }
        None => {
            let mut invocation = inner.reading(&scripts::SNAPSHOT);
            invocation.arg(path).arg(if tree { "tree" } else { "key" });
            let (last, pairs, epoch): (String, Vec<Stored>, String) =
                inner.invoke("watch", invocation).await?;
            snapshot_epoch = Some(epoch);
            let mut events = pairs
                .into_iter()
                .map(|(key, value, version)| {
                    crate::pair(&key, value, version).map(|p| WatchEvent {
                        kind: EventKind::Put,
                        key: p.key,
                        value: p.value,
                        version: p.version,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            events.sort_by(|a, b| a.key.cmp(&b.key));
            (events, last)
        }
    };
    let conn = connect(&inner).await?;
    let (sender, stream) = watch_channel(initial, path, &options);
    let reader = Reader {
        inner,
        path: path.to_owned(),
        tree,
        last_id: from,
        resuming: options.since.is_some(),
        epoch: snapshot_epoch,
    };
    tokio::spawn(reader.run(conn, sender));
    Ok(stream)
}

/// The revision of the last record trimmed from the log (0: none).
async fn trimmed_through(inner: &Inner) -> Result<u64> {
    let floor: Option<String> = inner
        .read(
            "watch",
            redis::cmd("GET")
                .arg(format!("{}:floor", inner.prefix))
                .clone(),
        )
        .await?;
    Ok(floor.as_deref().map_or(0, revision_of))
}

fn revision_of(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// A connection of its own: `XREAD BLOCK` would stall every other call on a shared one.
async fn connect(inner: &Inner) -> Result<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(inner.timeout))
        .set_response_timeout(Some(inner.timeout + BLOCK));
    tokio::time::timeout(
        inner.timeout * 2,
        inner
            .node()
            .client
            .get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| Error::Timeout {
        operation: "watch connect",
        after: inner.timeout * 2,
    })?
    .map_err(crate::map_error)
}

struct Reader {
    inner: Arc<Inner>,
    path: String,
    tree: bool,
    /// The log id to read after.
    last_id: String,
    /// Resuming with `since`: missing records then mean compaction, not lag.
    resuming: bool,
    /// The store's epoch this watch follows (known from the snapshot or the first read).
    epoch: Option<String>,
}

/// A log id as a comparable pair.
fn id_of(id: &str) -> (u64, u64) {
    let (rev, seq) = id.split_once('-').unwrap_or((id, "0"));
    (rev.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

impl Reader {
    async fn run(mut self, mut conn: MultiplexedConnection, mut sender: WatchSender) {
        let log = format!("{}:log", self.inner.prefix);
        // Since when the log reads have failed: a watch that cannot read the log (the server
        // answers, but no replica confirms what it read) ends as one that cannot reach it.
        let mut failing: Option<std::time::Instant> = None;
        loop {
            let mut invocation = self.inner.reading(&scripts::READ_LOG);
            invocation.arg(&self.last_id).arg(BATCH);
            let read = tokio::select! {
                _ = self.inner.closed.cancelled() => return sender.fail(Error::Closed),
                _ = sender.closed() => return,
                read = self.inner.invoke::<(String, Vec<(String, Vec<Vec<u8>>)>, u64, String)>("watch", invocation) => read,
            };
            let (floor, records, revision, epoch) = match read {
                Ok(read) => {
                    failing = None;
                    read
                }
                Err(error)
                    if error.is_transient()
                        && failing
                            .get_or_insert_with(std::time::Instant::now)
                            .elapsed()
                            > self.inner.timeout * 3 =>
                {
                    return sender.fail(Error::unavailable(
                        format!(
                            "the watch could not read the change log for {:?} ({error}); the \
                             watch ended",
                            self.inner.timeout * 3
                        ),
                        Some(Box::new(error)),
                    ));
                }
                Err(error) if error.is_transient() => match self.reconnect(&sender).await {
                    Ok(fresh) => {
                        conn = fresh;
                        continue;
                    }
                    Err(error) => return sender.fail(error),
                },
                Err(error) => return sender.fail(error),
            };
            let (seen, _) = id_of(&self.last_id);
            let followed = self.epoch.get_or_insert_with(|| epoch.clone());
            if followed.is_empty() && seen == 0 {
                // The store had never been written when this watch began: nothing to lose.
                followed.clone_from(&epoch);
            }
            if *followed != epoch {
                // The revision counter started again (a restart without persistence, a flush)
                // and writes may already have reused the revisions this watch has seen.
                return sender.fail(Error::unavailable(
                    format!(
                        "the Redis server lost its data (kv's revision counter started again, \
                         as after a restart without persistence; this watch had seen revision \
                         {seen}); the watch ended: re-read and watch again"
                    ),
                    None,
                ));
            }
            if revision < seen {
                // A server restarted without persistence (or flushed): the revision went back
                // below what this watch has seen, and later writes would reuse its versions.
                // Nothing can be resumed: say so rather than wait for revisions that will
                // never come in order.
                return sender.fail(Error::unavailable(
                    format!(
                        "the Redis server lost its data (its revision went back from {seen} to \
                         {revision}, as after a restart without persistence); the watch ended: \
                         re-read and watch again"
                    ),
                    None,
                ));
            }
            if id_of(&floor) > id_of(&self.last_id) {
                // Records after the last one read were trimmed before this watch read them.
                let (trimmed, _) = id_of(&floor);
                return sender.fail(if self.resuming {
                    Error::Compacted {
                        requested: id_of(&self.last_id).0,
                        oldest: trimmed + 1,
                    }
                } else {
                    Error::WatchLagged {
                        buffer: self.inner.history,
                    }
                });
            }
            self.resuming = false;
            let full = records.len() >= BATCH;
            for (id, fields) in records {
                self.last_id = id;
                let Some(event) = self.event(&self.last_id, &fields) else {
                    continue;
                };
                if !sender.send(event) {
                    return;
                }
            }
            if full {
                continue;
            }
            // Wait for the next record (or a moment) on this watch's own connection.
            let wait = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(500))
                .arg("STREAMS")
                .arg(&log)
                .arg(&self.last_id)
                .clone();
            let waited = tokio::select! {
                _ = self.inner.closed.cancelled() => return sender.fail(Error::Closed),
                _ = sender.closed() => return,
                waited = wait.query_async::<redis::Value>(&mut conn) => waited,
            };
            if waited.is_err() {
                match self.reconnect(&sender).await {
                    Ok(fresh) => conn = fresh,
                    Err(error) => return sender.fail(error),
                }
            }
        }
    }

    /// The kv event of a log record (`k`, `t`, `v` fields), if it concerns this watch.
    fn event(&self, id: &str, fields: &[Vec<u8>]) -> Option<WatchEvent> {
        let field = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|pair| pair[0] == name)
                .and_then(|pair| pair.get(1))
        };
        let key = std::str::from_utf8(field(b"k")?).ok()?;
        let concerned = if self.tree {
            covers(&self.path, key)
        } else {
            key == self.path
        };
        if !concerned {
            return None;
        }
        let (kind, value) = if field(b"t")?.as_slice() == b"put" {
            (EventKind::Put, Bytes::copy_from_slice(field(b"v")?))
        } else {
            (EventKind::Delete, Bytes::new())
        };
        Some(WatchEvent {
            kind,
            key: Key::parse(key).ok()?,
            value,
            version: id_of(id).0,
        })
    }

    async fn reconnect(&self, sender: &WatchSender) -> Result<MultiplexedConnection> {
        resume_watch(sender, &self.inner.closed, self.inner.timeout * 3, || {
            connect(&self.inner)
        })
        .await
    }
}
