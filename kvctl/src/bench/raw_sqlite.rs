//! The SQLite baseline: rusqlite on a fresh database file in WAL mode with
//! `synchronous=NORMAL` (kv-sqlite's defaults), one table, each statement its own transaction,
//! run like kv-sqlite runs its calls (a connection pool on tokio's blocking threads).
//!
//! | op | raw (this file) | kv-sqlite |
//! |---|---|---|
//! | put | `INSERT … ON CONFLICT DO UPDATE` | `BEGIN IMMEDIATE`, reap expired, read the version, bump the revision, upsert, append to the log, trim, `COMMIT` |
//! | get | `SELECT value` | `SELECT value, version` with the expiry check |
//! | exists | `SELECT 1` | the same with the expiry check |
//! | list | range `SELECT`, the rows returned to the caller | the same with the expiry check |
//! | delete | `DELETE` | a write transaction as for put, with a Delete record |
//! | cas | `UPDATE … WHERE version = ?` | a write transaction as for put, with the version check |

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{OpResult, Target};
use crate::output::{Failure, code};

/// A database file that lives as long as the bench.
pub struct RawSqlite {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl RawSqlite {
    /// Creates a fresh database in a temporary directory.
    pub fn open() -> Result<RawSqlite, Failure> {
        let path =
            std::env::temp_dir().join(format!("kvbench-raw-sqlite-{:08x}.db", fastrand::u32(..)));
        let raw = RawSqlite {
            path,
            idle: Arc::new(Mutex::new(Vec::new())),
        };
        let conn = connect(&raw.path).map_err(|e| Failure::new(code::OTHER, e))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS raw(
                 key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(|e| Failure::new(code::OTHER, format!("sqlite: {e}")))?;
        raw.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        Ok(raw)
    }

    async fn run<T, F>(&self, call: F) -> OpResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (idle, path) = (self.idle.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let taken = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match taken {
                Some(conn) => conn,
                None => connect(&path)?,
            };
            let outcome = call(&conn).map_err(|e| e.to_string());
            idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            outcome
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

fn connect(path: &std::path::Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(|e| format!("sqlite: {e}"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .and_then(|()| {
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        })
        .map_err(|e| format!("sqlite: {e}"))?;
    Ok(conn)
}

impl Drop for RawSqlite {
    fn drop(&mut self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

#[async_trait]
impl Target for RawSqlite {
    async fn put(&self, key: &str, value: &[u8]) -> OpResult<u64> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO raw(key, value, version) VALUES (?1, ?2, 1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = version + 1
                 RETURNING version",
            )?
            .query_row(params![key, value], |r| r.get::<_, i64>(0))
            .map(|v| u64::try_from(v).unwrap_or(0))
        })
        .await
    }

    async fn get(&self, key: &str) -> OpResult<bool> {
        let key = key.to_owned();
        self.run(move |conn| {
            conn.prepare_cached("SELECT value, version FROM raw WHERE key = ?1")?
                .query_row([key], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()
                .map(|found| found.is_some())
        })
        .await
    }

    async fn exists(&self, key: &str) -> OpResult<bool> {
        let key = key.to_owned();
        self.run(move |conn| {
            conn.prepare_cached("SELECT 1 FROM raw WHERE key = ?1")?
                .exists([key])
        })
        .await
    }

    async fn list(&self, dir: &str) -> OpResult<usize> {
        let (from, to) = (format!("{dir}/"), format!("{dir}0"));
        self.run(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT key, value, version FROM raw WHERE key >= ?1 AND key < ?2 ORDER BY key",
            )?;
            let rows = statement.query_map(params![from, to], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            // Handed to the caller, as kv's list hands its pairs (and freed there).
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await
        .map(|rows| rows.len())
    }

    async fn delete(&self, key: &str) -> OpResult<()> {
        let key = key.to_owned();
        self.run(move |conn| {
            conn.prepare_cached("DELETE FROM raw WHERE key = ?1")?
                .execute([key])
                .map(drop)
        })
        .await
    }

    async fn cas(&self, key: &str, _previous: &[u8], value: &[u8], token: u64) -> OpResult<u64> {
        let (key, value) = (key.to_owned(), value.to_vec());
        let token = i64::try_from(token).unwrap_or(i64::MAX);
        let next = self
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE raw SET value = ?2, version = version + 1
                     WHERE key = ?1 AND version = ?3 RETURNING version",
                )?
                .query_row(params![key, value, token], |r| r.get::<_, i64>(0))
                .optional()
            })
            .await?;
        next.map(|v| u64::try_from(v).unwrap_or(0))
            .ok_or_else(|| "the version changed".to_owned())
    }

    async fn token(&self, key: &str) -> OpResult<u64> {
        let key = key.to_owned();
        self.run(move |conn| {
            conn.query_row("SELECT version FROM raw WHERE key = ?1", [key], |r| {
                r.get::<_, i64>(0)
            })
            .map(|v| u64::try_from(v).unwrap_or(0))
        })
        .await
    }

    async fn cleanup(&self, prefix: &str) -> OpResult<()> {
        let (from, to) = (format!("{prefix}/"), format!("{prefix}0"));
        let exact = prefix.to_owned();
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM raw WHERE key = ?3 OR (key >= ?1 AND key < ?2)",
                params![from, to, exact],
            )
            .map(drop)
        })
        .await
    }
}
