//! The database: its layout, its connections, and every statement kv-sqlite runs.
//!
//! Layout (one file, WAL mode; `kv_meta.layout` records its version):
//! - `kv_data(key, value, version, expires_at)`: live values; `expires_at` in ms since the Unix
//!   epoch, NULL without TTL. Keys are TEXT compared bytewise (kv's order).
//! - `kv_log(revision, key, kind, value)`: one record per change (kind 0 put, 1 delete, 2 a
//!   lock taken: its fencing token), the
//!   history watches tail and `since` resumes from; trimmed to `history` records.
//! - `kv_locks(key, subtree, token, value, expires_at)`: held locks with their lease.
//! - `kv_leases(id, ttl_ms, expires_at)`: leases keys share; a key put with one carries its
//!   id in `kv_data.lease` and its expiry in `expires_at`, which each renewal moves for all of
//!   them (so readers and the reaper treat them as TTL keys). `kv_data.lease` was added after
//!   layout 1 shipped: opening adds it to older files.
//! - `kv_meta(name, value)`: `floor` (the last revision trimmed from the log), `layout`,
//!   `lease_seq` (the last lease ID handed out: IDs are never reused).
//!
//! The store-wide revision, which every version and fencing token comes from, is the log's last
//! record: each revision is logged, and trimming always keeps the last `history` (≥ 1) records,
//! so it only grows. A write changes two B-trees (the value, the log).
//!
//! Every change runs in one `BEGIN IMMEDIATE` transaction; an expired value it finds on its way
//! is removed first with a Delete record, and each handle's reaper removes the others (at the
//! next expiry, and at least once a second), so expiry needs no particular process; readers
//! skip expired values by time. Connections wait up to `busy_timeout` for another process's
//! write.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kv_core::{Error, Result};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

/// Connections kept open for reuse (tokio runs at most 512 blocking threads; a call that finds
/// none idle opens one, and one given back beyond this is closed).
const MAX_IDLE: usize = 64;

/// The layout version this build writes and reads.
pub const LAYOUT_VERSION: i64 = 1;

/// The log is trimmed when a write's revision reaches a multiple of this (or of `history`, if
/// smaller), so it keeps between `history` and `history + TRIM_EVERY` records.
const TRIM_EVERY: i64 = 64;

/// Change kinds in `kv_log`.
pub const PUT: i64 = 0;
/// A delete (or an expiry).
pub const DELETE: i64 = 1;
/// A lock taken (the revision is its fencing token); not a change of data.
pub const LOCK: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv_meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_data(
    key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL, expires_at INTEGER,
    lease INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_data_expiry ON kv_data(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS kv_log(
    revision INTEGER PRIMARY KEY, key TEXT NOT NULL, kind INTEGER NOT NULL, value BLOB
);
CREATE TABLE IF NOT EXISTS kv_locks(
    key TEXT NOT NULL, subtree INTEGER NOT NULL, token INTEGER NOT NULL, value BLOB NOT NULL,
    expires_at INTEGER NOT NULL, PRIMARY KEY(key, subtree)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_leases(
    id INTEGER PRIMARY KEY, ttl_ms INTEGER NOT NULL, expires_at INTEGER NOT NULL
);
INSERT OR IGNORE INTO kv_meta VALUES ('floor', 0), ('layout', 1);
";

/// What opening adds to a file created before leases (same layout version: readers of layout
/// 1 ignore the column), then the index every file gets.
const LEASE_COLUMN: &str = "ALTER TABLE kv_data ADD COLUMN lease INTEGER;";
const LEASE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS kv_data_lease ON kv_data(lease) WHERE lease IS NOT NULL;";

/// How the database is opened.
#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    /// `synchronous=FULL` (fsync per commit) instead of NORMAL.
    pub sync_full: bool,
    pub busy_timeout: Duration,
    pub history: u64,
}

/// The database file and a pool of connections to it. Calls run on tokio's blocking threads.
pub struct Db {
    pub settings: Settings,
    idle: Mutex<Vec<Connection>>,
}

/// One change for the log: (revision, key, kind, value).
pub type Change = (u64, String, i64, Vec<u8>);

/// Milliseconds since the Unix epoch: expiry is wall-clock time, shared by every process.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The upper bound of the keys strictly below `prefix`: `prefix/` ≤ key < `prefix0`.
pub fn below(prefix: &str) -> (String, String) {
    (format!("{prefix}/"), format!("{prefix}0"))
}

pub fn sql_error(operation: &'static str, error: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match error.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => Error::unavailable(
            format!(
                "{operation}: the SQLite database stayed locked by another writer past the busy \
                 timeout; raise busy_timeout or retry"
            ),
            Some(Box::new(error)),
        ),
        _ => Error::Backend(format!("SQLite failed to {operation}: {error}").into()),
    }
}

impl Db {
    /// Opens (creating if needed) the database and checks its layout.
    pub fn open(settings: Settings) -> Result<Db> {
        let db = Db {
            settings,
            idle: Mutex::new(Vec::new()),
        };
        let conn = db.connect()?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| sql_error("create the tables", e))?;
        let has_lease: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('kv_data') WHERE name = 'lease'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| sql_error("read the table layout", e))?;
        if !has_lease {
            match conn.execute_batch(LEASE_COLUMN) {
                Ok(()) => {}
                // Another process added it first.
                Err(e) if e.to_string().contains("duplicate column") => {}
                Err(e) => return Err(sql_error("add the lease column", e)),
            }
        }
        conn.execute_batch(LEASE_INDEX)
            .map_err(|e| sql_error("create the lease index", e))?;
        let layout: i64 = conn
            .query_row("SELECT value FROM kv_meta WHERE name = 'layout'", [], |r| {
                r.get(0)
            })
            .map_err(|e| sql_error("read the layout version", e))?;
        if layout != LAYOUT_VERSION {
            return Err(Error::Backend(
                format!(
                    "{} has kv-sqlite layout {layout}; this build reads layout {LAYOUT_VERSION}",
                    db.settings.path.display()
                )
                .into(),
            ));
        }
        db.give_back(conn);
        Ok(db)
    }

    /// A new connection with the store's settings (busy timeout, WAL, synchronous).
    pub fn connect(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.settings.path, flags).map_err(|e| {
            Error::unavailable(
                format!(
                    "cannot open the SQLite database {}: {e}",
                    self.settings.path.display()
                ),
                Some(Box::new(e)),
            )
        })?;
        conn.busy_timeout(self.settings.busy_timeout)
            .map_err(|e| sql_error("set the busy timeout", e))?;
        let synchronous = if self.settings.sync_full {
            "FULL"
        } else {
            "NORMAL"
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};"
        ))
        .map_err(|e| sql_error("set WAL mode", e))?;
        Ok(conn)
    }

    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Runs `call` with a connection on a blocking thread.
    pub async fn run<T, F>(self: &Arc<Self>, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.take()?;
            let outcome = call(&mut conn);
            db.give_back(conn);
            outcome
        })
        .await
        .map_err(|e| Error::Backend(Box::new(e)))?
    }

    /// Runs `change` in one write transaction, after reaping expired values; returns its
    /// result and the log records it (and the reaping) wrote.
    pub async fn write<T, F>(self: &Arc<Self>, operation: &'static str, change: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer<'_>) -> Result<T> + Send + 'static,
    {
        let history = self.settings.history;
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sql_error(operation, e))?;
            let mut writer = Writer {
                tx,
                operation,
                now: now_ms(),
                wrote: false,
                first: 0,
                last: 0,
            };
            let outcome = change(&mut writer)?;
            if writer.wrote {
                writer.trim(history)?;
            }
            writer.tx.commit().map_err(|e| sql_error(operation, e))?;
            Ok(outcome)
        })
        .await
    }
}

/// A write transaction in progress.
pub struct Writer<'c> {
    pub tx: Transaction<'c>,
    pub operation: &'static str,
    /// The transaction's time (ms since the epoch).
    pub now: i64,
    wrote: bool,
    /// The first and last revisions logged by this transaction.
    first: i64,
    last: i64,
}

impl Writer<'_> {
    fn err(&self, e: rusqlite::Error) -> Error {
        sql_error(self.operation, e)
    }

    /// The next store-wide revision: one more than the last one logged (by this transaction,
    /// or before it). The caller logs it.
    pub fn next_revision(&mut self) -> Result<u64> {
        if self.last == 0 {
            let (_, revision) =
                floor_and_revision(&self.tx).map_err(|e| sql_error(self.operation, e))?;
            self.last = i64::try_from(revision).unwrap_or(i64::MAX);
        }
        Ok(u64::try_from(self.last + 1).unwrap_or(0))
    }

    /// Logs a lock taken with fencing token `token` (from [`Writer::next_revision`]).
    pub fn log_lock(&mut self, key: &str, token: u64) -> Result<()> {
        self.log(i64::try_from(token).unwrap_or(i64::MAX), key, LOCK, None)
    }

    /// The version of a live key; an expired value found there is removed first, with its
    /// Delete record (as the reaper would have).
    pub fn version(&mut self, key: &str) -> Result<Option<u64>> {
        let found = self
            .tx
            .prepare_cached("SELECT version, expires_at FROM kv_data WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row([key], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        match found {
            Some((_, Some(expires_at))) if expires_at <= self.now => {
                self.remove(key)?;
                Ok(None)
            }
            Some((version, _)) => Ok(Some(u64::try_from(version).unwrap_or(0))),
            None => Ok(None),
        }
    }

    /// Writes a value with a new revision (expiring at `expires_at`, bound to `lease`); returns
    /// it.
    pub fn put(
        &mut self,
        key: &str,
        value: &[u8],
        expires_at: Option<i64>,
        lease: Option<i64>,
    ) -> Result<u64> {
        let revision = self.next_revision()?;
        let version = i64::try_from(revision).unwrap_or(i64::MAX);
        self.tx
            .prepare_cached(
                "INSERT INTO kv_data(key, value, version, expires_at, lease)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value,
                     version = excluded.version, expires_at = excluded.expires_at,
                     lease = excluded.lease",
            )
            .and_then(|mut s| s.execute(params![key, value, version, expires_at, lease]))
            .map_err(|e| self.err(e))?;
        self.log(version, key, PUT, Some(value))?;
        Ok(revision)
    }

    /// A live key's value and version (an expired value is removed first, as by
    /// [`Writer::version`]).
    pub fn current(&mut self, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
        if self.version(key)?.is_none() {
            return Ok(None);
        }
        read_key(&self.tx, key, self.now).map_err(|e| self.err(e))
    }

    /// Deletes a live key with a new revision (a Delete record); false if there was none.
    pub fn delete(&mut self, key: &str) -> Result<bool> {
        if self.version(key)?.is_none() {
            return Ok(false);
        }
        self.remove(key)?;
        Ok(true)
    }

    /// Removes a key's row with a new revision and a Delete record.
    fn remove(&mut self, key: &str) -> Result<()> {
        let revision = self.next_revision()?;
        self.tx
            .prepare_cached("DELETE FROM kv_data WHERE key = ?1")
            .and_then(|mut s| s.execute([key]))
            .map_err(|e| self.err(e))?;
        self.log(
            i64::try_from(revision).unwrap_or(i64::MAX),
            key,
            DELETE,
            None,
        )
    }

    /// The live keys a prefix covers, sorted.
    pub fn keys_covered(&self, prefix: &str) -> Result<Vec<String>> {
        let (from, to) = below(prefix);
        let mut statement = self
            .tx
            .prepare_cached(
                "SELECT key FROM kv_data
                 WHERE ?1 = '' OR (key >= ?1 AND key < ?3 AND (key = ?1 OR key >= ?2))
                 ORDER BY key",
            )
            .map_err(|e| self.err(e))?;
        let keys = statement
            .query_map(params![prefix, from, to], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.err(e))?;
        Ok(keys)
    }

    fn log(&mut self, revision: i64, key: &str, kind: i64, value: Option<&[u8]>) -> Result<()> {
        self.wrote = true;
        if self.first == 0 {
            self.first = revision;
        }
        self.last = revision;
        self.tx
            .prepare_cached(
                "INSERT INTO kv_log(revision, key, kind, value) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![revision, key, kind, value]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Grants a lease of `ttl_ms`; returns its id.
    pub fn grant(&mut self, ttl_ms: i64) -> Result<i64> {
        let id = self
            .tx
            // IDs are never reused (rowids would be, after the newest lease ends): a stale ID
            // held by another process must not name a new lease. `lease_seq` counts them.
            .prepare_cached(
                "INSERT INTO kv_meta VALUES ('lease_seq', 1 + max(
                     coalesce((SELECT value FROM kv_meta WHERE name = 'lease_seq'), 0),
                     coalesce((SELECT max(id) FROM kv_leases), 0)))
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value
                 RETURNING value",
            )
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map_err(|e| self.err(e))?;
        self.tx
            .prepare_cached("INSERT INTO kv_leases(id, ttl_ms, expires_at) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![id, ttl_ms, self.now.saturating_add(ttl_ms)]))
            .map_err(|e| self.err(e))?;
        Ok(id)
    }

    /// The expiry of a live lease; `None` if it has ended.
    pub fn lease_expiry(&self, id: i64) -> Result<Option<i64>> {
        self.tx
            .prepare_cached("SELECT expires_at FROM kv_leases WHERE id = ?1 AND expires_at > ?2")
            .and_then(|mut s| s.query_row(params![id, self.now], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Extends a live lease and its keys by its TTL; false if it has ended.
    pub fn renew(&mut self, id: i64) -> Result<bool> {
        let renewed = self
            .tx
            .prepare_cached(
                "UPDATE kv_leases SET expires_at = ?2 + ttl_ms WHERE id = ?1 AND expires_at > ?2",
            )
            .and_then(|mut s| s.execute(params![id, self.now]))
            .map_err(|e| self.err(e))?;
        if renewed == 0 {
            return Ok(false);
        }
        self.tx
            .prepare_cached(
                "UPDATE kv_data SET expires_at = (SELECT expires_at FROM kv_leases WHERE id = ?1)
                 WHERE lease = ?1 AND expires_at > ?2",
            )
            .and_then(|mut s| s.execute(params![id, self.now]))
            .map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Renews a live lease for a handle that takes it up: its TTL in ms, or `None` if it has
    /// ended.
    pub fn attach(&mut self, id: i64) -> Result<Option<i64>> {
        if !self.renew(id)? {
            return Ok(None);
        }
        self.tx
            .prepare_cached("SELECT ttl_ms FROM kv_leases WHERE id = ?1")
            .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Ends a lease and removes its live keys (Delete records); false if it had ended.
    pub fn revoke(&mut self, id: i64) -> Result<bool> {
        let ended = self
            .tx
            .prepare_cached("DELETE FROM kv_leases WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(|e| self.err(e))?;
        let keys: Vec<String> = self
            .tx
            .prepare_cached("SELECT key FROM kv_data WHERE lease = ?1 ORDER BY key")
            .and_then(|mut s| {
                s.query_map([id], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(|e| self.err(e))?;
        for key in keys {
            self.delete(&key)?;
        }
        Ok(ended > 0)
    }

    /// Removes values whose TTL has passed, each with a Delete record (the reaper's job).
    pub fn reap(&mut self) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM kv_leases WHERE expires_at <= ?1")
            .and_then(|mut s| s.execute([self.now]))
            .map_err(|e| self.err(e))?;
        let expired: Vec<String> = {
            let mut statement = self
                .tx
                .prepare_cached(
                    "SELECT key FROM kv_data WHERE expires_at IS NOT NULL AND expires_at <= ?1
                     ORDER BY expires_at, key",
                )
                .map_err(|e| self.err(e))?;
            statement
                .query_map([self.now], |r| r.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                .map_err(|e| self.err(e))?
        };
        for key in expired {
            self.remove(&key)?;
        }
        Ok(())
    }

    /// Keeps at least the last `history` log records (trimming when this transaction's
    /// records reach a multiple of [`TRIM_EVERY`] or `history`); the floor records what was
    /// trimmed.
    fn trim(&mut self, history: u64) -> Result<()> {
        let history = i64::try_from(history).unwrap_or(i64::MAX);
        let every = TRIM_EVERY.min(history).max(1);
        if (self.first - 1) / every == self.last / every {
            return Ok(());
        }
        let floor = self.last - history;
        if floor <= 0 {
            return Ok(());
        }
        let trimmed = self
            .tx
            .execute("DELETE FROM kv_log WHERE revision <= ?1", [floor])
            .map_err(|e| self.err(e))?;
        if trimmed > 0 {
            self.tx
                .execute(
                    "UPDATE kv_meta SET value = max(value, ?1) WHERE name = 'floor'",
                    [floor],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

/// The last revision trimmed from the log, and the current revision.
pub fn floor_and_revision(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let floor: i64 = conn
        .prepare_cached("SELECT value FROM kv_meta WHERE name = 'floor'")?
        .query_row([], |r| r.get(0))?;
    let revision: Option<i64> = conn
        .prepare_cached("SELECT max(revision) FROM kv_log")?
        .query_row([], |r| r.get(0))?;
    Ok((
        u64::try_from(floor).unwrap_or(0),
        u64::try_from(revision.unwrap_or(0).max(floor)).unwrap_or(0),
    ))
}

/// Live pairs (key, value, version) a prefix covers, sorted, at `now`: the prefix key and the
/// keys in [`prefix/`, `prefix0`), found by one range of the primary key.
pub fn read_covered(
    conn: &Connection,
    prefix: &str,
    now: i64,
) -> rusqlite::Result<Vec<kv_core::KvPair>> {
    // The pair built from the row as it is (the key borrowed from SQLite's buffer): one
    // allocation each for key and value, the most a `KvPair` needs.
    let row = |r: &rusqlite::Row<'_>| {
        Ok(kv_core::KvPair {
            key: kv_core::Key::from_normalized(r.get_ref(0)?.as_str()?),
            value: bytes::Bytes::from(r.get::<_, Vec<u8>>(1)?),
            version: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        })
    };
    if prefix.is_empty() {
        let mut statement = conn.prepare_cached(
            "SELECT key, value, version FROM kv_data
             WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY key",
        )?;
        return statement.query_map([now], row)?.collect();
    }
    let (from, to) = below(prefix);
    let mut statement = conn.prepare_cached(
        "SELECT key, value, version FROM kv_data
         WHERE key >= ?1 AND key < ?3 AND (key = ?1 OR key >= ?2)
           AND (expires_at IS NULL OR expires_at > ?4)
         ORDER BY key",
    )?;
    statement
        .query_map(params![prefix, from, to, now], row)?
        .collect()
}

/// One live pair, at `now`.
pub fn read_key(
    conn: &Connection,
    key: &str,
    now: i64,
) -> rusqlite::Result<Option<(Vec<u8>, u64)>> {
    conn.prepare_cached(
        "SELECT value, version FROM kv_data
         WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    )?
    .query_row(params![key, now], |r| {
        Ok((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
    })
    .optional()
}

/// Log records after `after`, up to `limit`, in order.
pub fn read_log(conn: &Connection, after: u64, limit: usize) -> rusqlite::Result<Vec<Change>> {
    let mut statement = conn.prepare_cached(
        "SELECT revision, key, kind, value FROM kv_log WHERE revision > ?1 ORDER BY revision
         LIMIT ?2",
    )?;
    let rows = statement.query_map(
        params![
            i64::try_from(after).unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| {
            Ok((
                u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                r.get(1)?,
                r.get(2)?,
                r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
            ))
        },
    )?;
    rows.collect()
}

/// The earliest expiry of a value, if any (for the reaper).
pub fn next_expiry(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT min(expires_at) FROM kv_data WHERE expires_at IS NOT NULL",
        [],
        |r| r.get(0),
    )
}
