//! The sled baseline: a `sled::Db` in a temporary directory, called directly.
//!
//! | op | raw (this file) | kv-sled |
//! |---|---|---|
//! | put | `insert` | kv-memory's index + tree update, then one sled batch (record + revision) |
//! | get | `get` | kv-memory's hash index (values are held in memory) |
//! | exists | `contains_key` | the same index |
//! | list | `scan_prefix(dir/)` | kv-memory's ordered tree |
//! | delete | `remove` | index + tree, then one sled batch |
//! | cas | `compare_and_swap(previous → new)` | version check, then one sled batch |

use async_trait::async_trait;

use super::{OpResult, Target};
use crate::output::{Failure, code};

/// A sled database that lives as long as the bench.
pub struct RawSled {
    db: sled::Db,
    _dir: std::path::PathBuf,
}

impl RawSled {
    /// Opens a fresh database in a temporary directory.
    pub fn open() -> Result<RawSled, Failure> {
        let dir = std::env::temp_dir().join(format!("kvbench-raw-sled-{:08x}", fastrand::u32(..)));
        let db = sled::open(&dir).map_err(|e| Failure::new(code::OTHER, format!("sled: {e}")))?;
        Ok(RawSled { db, _dir: dir })
    }
}

impl Drop for RawSled {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn err(e: sled::Error) -> String {
    e.to_string()
}

#[async_trait]
impl Target for RawSled {
    async fn put(&self, key: &str, value: &[u8]) -> OpResult<u64> {
        self.db.insert(key, value).map(|_| 0).map_err(err)
    }

    async fn get(&self, key: &str) -> OpResult<bool> {
        Ok(self.db.get(key).map_err(err)?.is_some())
    }

    async fn exists(&self, key: &str) -> OpResult<bool> {
        self.db.contains_key(key).map_err(err)
    }

    async fn list(&self, dir: &str) -> OpResult<usize> {
        let mut n = 0;
        for entry in self.db.scan_prefix(format!("{dir}/")) {
            entry.map_err(err)?;
            n += 1;
        }
        Ok(n)
    }

    async fn delete(&self, key: &str) -> OpResult<()> {
        self.db.remove(key).map(drop).map_err(err)
    }

    async fn cas(&self, key: &str, previous: &[u8], value: &[u8], _token: u64) -> OpResult<u64> {
        match self
            .db
            .compare_and_swap(key, Some(previous), Some(value))
            .map_err(err)?
        {
            Ok(()) => Ok(0),
            Err(_) => Err(format!("{key} changed")),
        }
    }

    async fn cleanup(&self, _prefix: &str) -> OpResult<()> {
        self.db.clear().map_err(err)
    }
}
