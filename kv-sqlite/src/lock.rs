//! Locks across processes: a row in `kv_locks` with a lease (`expires_at`), taken in one write
//! transaction that checks every conflicting lock, renewed and released only with its token
//! (a fencing token from the store's revision counter), renewed by the shared keep-alive.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kv_core::backend::LeasedLock;
use kv_core::{Error, Key, Lock, LockGuard, LockHolder, LockOptions, Result};
use rusqlite::{OptionalExtension, params};

use crate::Inner;
use crate::db::{self, below, now_ms};

/// How often a waiting `acquire` tries again when nothing signals a change.
const RETRY: Duration = Duration::from_millis(50);

/// A lock on a key or subtree of a SQLite store.
pub(crate) struct SqliteLock {
    pub inner: Arc<Inner>,
    pub key: Key,
    pub subtree: bool,
    pub options: LockOptions,
}

impl fmt::Debug for SqliteLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLock")
            .field("key", &self.key)
            .field("subtree", &self.subtree)
            .finish()
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Renews (`ttl` > 0) or releases (`ttl` = 0) a lock if `token` still holds it.
pub(crate) async fn renew_or_release(
    inner: &Arc<Inner>,
    key: &Key,
    subtree: bool,
    token: u64,
    ttl: Duration,
) -> Result<bool> {
    let key = key.as_str().to_owned();
    let token = i64::try_from(token).unwrap_or(i64::MAX);
    let changed = inner
        .db
        .write("lock", move |w| {
            let changed = if ttl.is_zero() {
                w.tx.execute(
                    "DELETE FROM kv_locks WHERE key = ?1 AND subtree = ?2 AND token = ?3",
                    params![key, subtree, token],
                )
            } else {
                w.tx.execute(
                    "UPDATE kv_locks SET expires_at = ?4
                     WHERE key = ?1 AND subtree = ?2 AND token = ?3 AND expires_at > ?5",
                    params![key, subtree, token, w.now + millis(ttl), w.now],
                )
            };
            changed.map_err(|e| db::sql_error("lock", e))
        })
        .await?;
    if ttl.is_zero() {
        inner.signal();
    }
    Ok(changed == 1)
}

impl SqliteLock {
    async fn attempt(&self) -> Result<Option<LockGuard>> {
        self.inner.closed.check_open()?;
        let (key, subtree) = (self.key.clone(), self.subtree);
        let (ttl, value) = (self.options.ttl, self.options.value.clone());
        let sent = tokio::time::Instant::now();
        let token = self
            .inner
            .db
            .write("lock", move |w| {
                let now = w.now;
                let err = |e| db::sql_error("lock", e);
                w.tx.execute("DELETE FROM kv_locks WHERE expires_at <= ?1", [now])
                    .map_err(err)?;
                // Held: this key in either scope, a subtree lock on an ancestor, and for a
                // subtree lock any lock below.
                let mut conflict =
                    w.tx.query_row(
                        "SELECT 1 FROM kv_locks WHERE key = ?1 LIMIT 1",
                        [key.as_str()],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(err)?
                    .is_some();
                let mut ancestor = key.parent();
                while let Some(parent) = ancestor.filter(|_| !conflict) {
                    conflict =
                        w.tx.query_row(
                            "SELECT 1 FROM kv_locks WHERE key = ?1 AND subtree = 1",
                            [parent.as_str()],
                            |_| Ok(()),
                        )
                        .optional()
                        .map_err(err)?
                        .is_some();
                    ancestor = parent.parent();
                }
                if subtree && !conflict {
                    let (from, to) = below(key.as_str());
                    conflict =
                        w.tx.query_row(
                            "SELECT 1 FROM kv_locks WHERE key >= ?1 AND key < ?2 LIMIT 1",
                            params![from, to],
                            |_| Ok(()),
                        )
                        .optional()
                        .map_err(err)?
                        .is_some();
                }
                if conflict {
                    return Ok(None);
                }
                let token = w.next_revision()?;
                w.log_lock(key.as_str(), token)?;
                w.tx.execute(
                    "INSERT INTO kv_locks(key, subtree, token, value, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        key.as_str(),
                        subtree,
                        i64::try_from(token).unwrap_or(i64::MAX),
                        &value[..],
                        now + millis(ttl)
                    ],
                )
                .map_err(err)?;
                Ok(Some(token))
            })
            .await?;
        let Some(token) = token else {
            return Ok(None);
        };
        let leased = LeasedLock {
            key: &self.key,
            fencing_token: token,
            closed: &self.inner.closed,
            held: (&self.inner.held, (self.key.clone(), subtree, token)),
            ttl,
            renewed_sent: sent,
        };
        let renewing = (self.inner.clone(), self.key.clone());
        let releasing = renewing.clone();
        let (guard, _) = leased.guard(
            move || {
                let (inner, key) = renewing.clone();
                async move { renew_or_release(&inner, &key, subtree, token, ttl).await }
            },
            move || release(releasing.0.clone(), releasing.1.clone(), subtree, token),
        );
        Ok(Some(guard))
    }
}

#[async_trait]
impl Lock for SqliteLock {
    fn key(&self) -> &Key {
        &self.key
    }

    async fn acquire(&self) -> Result<LockGuard> {
        let mut changed = self.inner.changed.subscribe();
        loop {
            changed.borrow_and_update();
            if let Some(guard) = self.attempt().await? {
                return Ok(guard);
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep(RETRY) => {}
                _ = self.inner.closed.cancelled() => return Err(Error::Closed),
            }
        }
    }

    async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        self.attempt().await
    }

    async fn holder(&self) -> Result<Option<LockHolder>> {
        self.inner.closed.check_open()?;
        let (key, subtree) = (self.key.as_str().to_owned(), self.subtree);
        self.inner
            .db
            .run(move |conn| {
                conn.query_row(
                    "SELECT token, value FROM kv_locks
                     WHERE key = ?1 AND subtree = ?2 AND expires_at > ?3",
                    params![key, subtree, now_ms()],
                    |r| {
                        Ok(LockHolder {
                            fencing_token: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                            value: Bytes::from(r.get::<_, Vec<u8>>(1)?),
                        })
                    },
                )
                .optional()
                .map_err(|e| db::sql_error("lock holder", e))
            })
            .await
    }
}

/// Releases the lock if `token` still holds it; returns whether it did.
async fn release(inner: Arc<Inner>, key: Key, subtree: bool, token: u64) -> Result<bool> {
    let released = renew_or_release(&inner, &key, subtree, token, Duration::ZERO).await?;
    inner.held.forget(|(_, _, t)| *t == token);
    Ok(released)
}
