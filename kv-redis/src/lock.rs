//! Locks: a lock hash with `PEXPIRE`, taken by one script that checks every conflicting lock,
//! renewed and released only with its token.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use kv_core::backend::LeasedLock;
use kv_core::{Error, Key, Lock, LockGuard, LockHolder, LockOptions, Result};

use crate::{Inner, scripts};

/// How often a waiting `acquire` retries.
const RETRY: Duration = Duration::from_millis(50);

/// A lock on a key or subtree of a Redis store.
pub(crate) struct RedisLock {
    pub inner: Arc<Inner>,
    pub key: Key,
    pub subtree: bool,
    pub options: LockOptions,
}

impl fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLock")
            .field("key", &self.key)
            .field("subtree", &self.subtree)
            .finish()
    }
}

fn scope(subtree: bool) -> &'static str {
    if subtree { "s" } else { "k" }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Renews (`ttl` > 0) or releases (`ttl` = 0) a lock if `token` still holds it.
pub(crate) async fn renew_or_release(
    inner: &Inner,
    key: &Key,
    subtree: bool,
    token: u64,
    ttl: Duration,
) -> Result<bool> {
    let mut invocation = inner.writing(&scripts::LOCK_RENEW_OR_RELEASE);
    invocation
        .arg(key.as_str())
        .arg(scope(subtree))
        .arg(token)
        .arg(millis(ttl));
    Ok(inner.invoke::<i64>("lock", invocation).await? == 1)
}

impl RedisLock {
    async fn attempt(&self) -> Result<Option<LockGuard>> {
        self.inner.closed.check_open()?;
        let mut invocation = self.inner.writing(&scripts::LOCK);
        invocation
            .arg(self.key.as_str())
            .arg(scope(self.subtree))
            .arg(millis(self.options.ttl))
            .arg(&self.options.value[..]);
        let mut ancestor = self.key.parent();
        while let Some(parent) = ancestor {
            invocation.arg(parent.as_str());
            ancestor = parent.parent();
        }
        let sent = Instant::now();
        let token: u64 = self.inner.invoke("lock", invocation).await?;
        if token == 0 {
            return Ok(None);
        }
        let (subtree, ttl) = (self.subtree, self.options.ttl);
        let leased = LeasedLock {
            key: &self.key,
            fencing_token: token,
            closed: &self.inner.closed,
            held: (&self.inner.held, (self.key.clone(), subtree, token)),
            ttl,
            renewed_sent: sent.into(),
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
impl Lock for RedisLock {
    fn key(&self) -> &Key {
        &self.key
    }

    async fn acquire(&self) -> Result<LockGuard> {
        loop {
            if let Some(guard) = self.attempt().await? {
                return Ok(guard);
            }
            tokio::select! {
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
        let lock_key = format!(
            "{}:l{}:{}",
            self.inner.prefix,
            scope(self.subtree),
            self.key
        );
        let (token, value): (Option<u64>, Option<Vec<u8>>) = self
            .inner
            .read(
                "lock holder",
                redis::cmd("HMGET").arg(lock_key).arg("t").arg("v").clone(),
            )
            .await?;
        Ok(token.map(|fencing_token| LockHolder {
            value: Bytes::from(value.unwrap_or_default()),
            fencing_token,
        }))
    }
}

/// Releases the lock if `token` still holds it; returns whether it did.
async fn release(inner: Arc<Inner>, key: Key, subtree: bool, token: u64) -> Result<bool> {
    let released = renew_or_release(&inner, &key, subtree, token, Duration::ZERO).await?;
    inner.held.forget(|(_, _, t)| *t == token);
    Ok(released)
}
