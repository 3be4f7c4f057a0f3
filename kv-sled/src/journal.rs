//! The on-disk layout and the journal that keeps it up to date.
//!
//! # Layout, version 1
//!
//! One sled tree (the default one). Every key starts with a one-byte tag:
//!
//! | sled key | value |
//! |---|---|
//! | `m` `layout` | ASCII layout version, `1` |
//! | `m` `revision` | the last revision handed out, u64 big-endian |
//! | `d` + kv key (UTF-8, normalized) | record: version u64 BE, expiry in Unix milliseconds u64 BE (0: none), then the value |
//!
//! Every change is one atomic sled batch that also updates `revision`, so versions and fencing
//! tokens stay monotonic across restarts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kv_core::{Error, Key, Result};
use kv_memory::journal::{Journal, Recovered, RecoveredEntry};

/// The layout this code reads and writes.
pub const LAYOUT_VERSION: &str = "1";

const LAYOUT_KEY: &[u8] = b"mlayout";
const REVISION_KEY: &[u8] = b"mrevision";
const DATA_TAG: u8 = b'd';
const HEADER: usize = 16;

/// Records changes in a sled database.
pub(crate) struct SledJournal {
    db: sled::Db,
    /// Flush (fsync) after every change, not only every `flush_every_ms`.
    sync: bool,
}

impl SledJournal {
    pub fn new(db: sled::Db, sync: bool) -> SledJournal {
        SledJournal { db, sync }
    }

    /// Checks (or, on an empty database, writes) the layout version and reads every value.
    pub fn recover(&self) -> Result<Recovered> {
        match self.db.get(LAYOUT_KEY).map_err(backend)? {
            Some(found) if &found[..] == LAYOUT_VERSION.as_bytes() => {}
            Some(found) => {
                return Err(Error::Backend(
                    format!(
                        "the sled store has on-disk layout {:?}; this kv-sled reads layout {LAYOUT_VERSION}",
                        String::from_utf8_lossy(&found)
                    )
                    .into(),
                ));
            }
            None if self.db.is_empty() => {
                self.db
                    .insert(LAYOUT_KEY, LAYOUT_VERSION.as_bytes())
                    .map_err(backend)?;
                self.db.flush().map_err(backend)?;
            }
            None => {
                return Err(Error::Backend(
                    "the sled database was not written by kv-sled (no layout key)".into(),
                ));
            }
        }
        let revision = match self.db.get(REVISION_KEY).map_err(backend)? {
            Some(bytes) => decode_u64(&bytes, "revision")?,
            None => 0,
        };
        let mut entries = Vec::new();
        for item in self.db.scan_prefix([DATA_TAG]) {
            let (key, record) = item.map_err(backend)?;
            entries.push(decode_entry(&key[1..], &record)?);
        }
        Ok(Recovered { revision, entries })
    }

    fn apply(&self, batch: sled::Batch) -> Result<()> {
        self.db.apply_batch(batch).map_err(backend)?;
        if self.sync {
            self.db.flush().map_err(backend)?;
        }
        Ok(())
    }
}

impl Journal for SledJournal {
    fn put(
        &self,
        key: &Key,
        value: &[u8],
        version: u64,
        expires_at: Option<SystemTime>,
    ) -> Result<()> {
        let expiry = expires_at.map_or(0, |at| {
            at.duration_since(UNIX_EPOCH).map_or(1, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
            })
        });
        let mut batch = sled::Batch::default();
        batch.insert(data_key(key), record(value, version, expiry));
        batch.insert(REVISION_KEY, &version.to_be_bytes());
        self.apply(batch)
    }

    fn delete(&self, keys: &[Key], revision: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(data_key(key));
        }
        batch.insert(REVISION_KEY, &revision.to_be_bytes());
        self.apply(batch)
    }

    fn commit(&self, puts: &[(&Key, &[u8])], deletes: &[Key], revision: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (key, value) in puts {
            batch.insert(data_key(key), record(value, revision, 0));
        }
        for key in deletes {
            batch.remove(data_key(key));
        }
        batch.insert(REVISION_KEY, &revision.to_be_bytes());
        self.apply(batch)
    }

    fn advance(&self, revision: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(REVISION_KEY, &revision.to_be_bytes());
        self.apply(batch)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(backend)
    }
}

impl Drop for SledJournal {
    fn drop(&mut self) {
        // Best effort: what was applied is in sled's log and is flushed within its interval
        // anyway; this makes a clean shutdown durable at once.
        let _ = self.db.flush();
    }
}

/// A stored value: version, expiry (Unix ms, 0 for none), then the bytes.
fn record(value: &[u8], version: u64, expiry: u64) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER + value.len());
    record.extend_from_slice(&version.to_be_bytes());
    record.extend_from_slice(&expiry.to_be_bytes());
    record.extend_from_slice(value);
    record
}

fn data_key(key: &Key) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + key.as_str().len());
    bytes.push(DATA_TAG);
    bytes.extend_from_slice(key.as_str().as_bytes());
    bytes
}

fn decode_entry(key: &[u8], record: &[u8]) -> Result<RecoveredEntry> {
    let key = std::str::from_utf8(key)
        .ok()
        .and_then(|k| Key::parse(k).ok())
        .ok_or_else(|| corrupt("a stored key is not a valid kv key"))?;
    if record.len() < HEADER {
        return Err(corrupt("a stored record is shorter than its header"));
    }
    let version = decode_u64(&record[..8], "version")?;
    let expiry = decode_u64(&record[8..HEADER], "expiry")?;
    Ok(RecoveredEntry {
        key,
        value: Bytes::copy_from_slice(&record[HEADER..]),
        version,
        expires_at: (expiry != 0).then(|| UNIX_EPOCH + Duration::from_millis(expiry)),
    })
}

fn decode_u64(bytes: &[u8], what: &str) -> Result<u64> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(&format!("the stored {what} is not 8 bytes")))
}

fn corrupt(what: &str) -> Error {
    Error::Backend(format!("the sled store is corrupt: {what}").into())
}

pub(crate) fn backend(error: sled::Error) -> Error {
    Error::Backend(Box::new(error))
}
