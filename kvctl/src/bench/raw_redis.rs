//! The Redis baseline: the `redis` crate's multiplexed `ConnectionManager`, plain commands.
//!
//! | op | raw (this file) | kv-redis |
//! |---|---|---|
//! | put | `SET` | one Lua script: value, version, prefix index, change log |
//! | get | `GET` | `HMGET` of the value hash (+ expiry check in a script) |
//! | exists | `EXISTS` | one script (expiry-aware) |
//! | list | `SCAN MATCH dir/*` + `MGET` | `ZRANGEBYLEX` on the index + values in one script |
//! | delete | `DEL` | one script (index, log) |
//! | cas | Lua: compare a version counter, `SET` + `INCR` | one script |

use async_trait::async_trait;
use kv::StoreUrl;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{OpResult, Target};
use crate::output::{Failure, code};

/// The hand-rolled versioned compare-and-set.
const CAS: &str = r"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[2]) then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('INCR', KEYS[2])
";

/// A plain multiplexed Redis connection.
pub struct RawRedis {
    conn: ConnectionManager,
    cas: redis::Script,
}

impl RawRedis {
    /// Connects to the URL's server (no TLS).
    pub async fn connect(url: &StoreUrl) -> Result<RawRedis, Failure> {
        let unreachable =
            |e: redis::RedisError| Failure::new(code::UNREACHABLE, format!("redis: {e}"));
        let host = url
            .hosts
            .first()
            .map_or("127.0.0.1:6379".into(), |h| h.address(6379));
        let db = if url.path.is_empty() { "0" } else { &url.path };
        let client = redis::Client::open(format!("redis://{host}/{db}")).map_err(unreachable)?;
        let conn = client.get_connection_manager().await.map_err(unreachable)?;
        Ok(RawRedis {
            conn,
            cas: redis::Script::new(CAS),
        })
    }
}

fn err(e: redis::RedisError) -> String {
    e.to_string()
}

#[async_trait]
impl Target for RawRedis {
    async fn put(&self, key: &str, value: &[u8]) -> OpResult<u64> {
        let mut conn = self.conn.clone();
        let _: () = conn.set(key, value).await.map_err(err)?;
        Ok(0)
    }

    async fn get(&self, key: &str) -> OpResult<bool> {
        let mut conn = self.conn.clone();
        let value: Option<Vec<u8>> = conn.get(key).await.map_err(err)?;
        Ok(value.is_some())
    }

    async fn exists(&self, key: &str) -> OpResult<bool> {
        let mut conn = self.conn.clone();
        conn.exists(key).await.map_err(err)
    }

    async fn list(&self, dir: &str) -> OpResult<usize> {
        let mut conn = self.conn.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{dir}/*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let values: Vec<Option<Vec<u8>>> = conn.mget(&keys).await.map_err(err)?;
        Ok(values.iter().flatten().count())
    }

    async fn delete(&self, key: &str) -> OpResult<()> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(key).await.map_err(err)?;
        Ok(())
    }

    async fn cas(&self, key: &str, _previous: &[u8], value: &[u8], token: u64) -> OpResult<u64> {
        let mut conn = self.conn.clone();
        let next: i64 = self
            .cas
            .key(key)
            .key(format!("{key}:version"))
            .arg(value)
            .arg(token)
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        u64::try_from(next).map_err(|_| format!("{key} changed"))
    }

    async fn cleanup(&self, prefix: &str) -> OpResult<()> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn.keys(format!("{prefix}/*")).await.map_err(err)?;
        for chunk in keys.chunks(500) {
            let _: u64 = conn.del(chunk).await.map_err(err)?;
        }
        Ok(())
    }
}
