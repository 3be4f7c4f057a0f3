//! Locks: a lock key acquired by a session (`Behavior=delete`), taken by one transaction that
//! checks that no conflicting lock key exists; a subtree lock then checks, with a consistent
//! read, that no lock below it was taken first. The session is renewed in the background;
//! `lost()` fires when it ends or cannot be renewed in time, and ending it frees the lock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kv_core::backend::LeasedLock;
use kv_core::{Error, Key, Lock, LockGuard, LockHolder, LockOptions, Result};

use crate::Inner;
use crate::api::{MAX_TXN_OPS, SessionSpec, TxnOp};

/// Longest wait of one blocking query on the lock area.
const BLOCK: Duration = Duration::from_secs(30);

/// A lock on a key or subtree of a Consul store.
pub(crate) struct ConsulLock {
    inner: Arc<Inner>,
    key: Key,
    subtree: bool,
    options: LockOptions,
}

impl fmt::Debug for ConsulLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulLock")
            .field("key", &self.key)
            .field("subtree", &self.subtree)
            .finish()
    }
}

/// A Consul session; destroyed (freeing the locks it holds) when the last reference goes.
struct Session {
    inner: Arc<Inner>,
    id: String,
    ended: AtomicBool,
    /// When the call that created the session was sent: its lease runs from then at the latest.
    created_sent: Instant,
}

impl Session {
    async fn end(&self) -> Result<()> {
        if self.ended.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.api.destroy_session(&self.id).await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.ended.load(Ordering::Acquire)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (api, id) = (self.inner.api.clone(), self.id.clone());
            runtime.spawn(async move { api.destroy_session(&id).await });
        }
    }
}

impl ConsulLock {
    /// A lock handle; fails if the key is too deep for one Consul transaction.
    pub fn boxed(
        inner: Arc<Inner>,
        key: Key,
        subtree: bool,
        options: LockOptions,
    ) -> Result<Box<dyn Lock>> {
        if !inner.capabilities.locks {
            return Err(inner.capabilities.unsupported("locks"));
        }
        if key.segments().count() + 2 > MAX_TXN_OPS {
            return Err(Error::invalid_argument(format!(
                "a Consul lock checks every ancestor in one transaction of at most {MAX_TXN_OPS} operations: keys of more than {} segments cannot be locked",
                MAX_TXN_OPS - 2
            )));
        }
        if options.ttl.is_zero() {
            return Err(Error::invalid_argument("a lock TTL must be positive"));
        }
        if options.ttl < inner.session_ttl_min {
            // A shorter TTL would still hold the lock for a whole session TTL after a crash.
            return Err(Error::invalid_argument(format!(
                "a Consul lock TTL must be at least the servers' session_ttl_min ({:?}), got {:?}",
                inner.session_ttl_min, options.ttl
            )));
        }
        Ok(Box::new(ConsulLock {
            inner,
            key,
            subtree,
            options,
        }))
    }

    fn lock_key(&self) -> String {
        self.inner.layout.lock_key(self.subtree, self.key.as_str())
    }

    async fn session(&self) -> Result<Arc<Session>> {
        self.inner.closed.check_open()?;
        let created_sent = Instant::now();
        let id = self
            .inner
            .api
            .create_session(&SessionSpec {
                ttl: self.inner.session_ttl(self.options.ttl),
                name: "kv lock",
            })
            .await?;
        Ok(Arc::new(Session {
            inner: self.inner.clone(),
            id,
            ended: AtomicBool::new(false),
            created_sent,
        }))
    }

    /// One attempt with `session`: the fencing token if the lock was taken.
    async fn attempt(&self, session: &Session) -> Result<Option<u64>> {
        let layout = &self.inner.layout;
        let key = self.key.as_str();
        let mut ops = vec![
            TxnOp::check_not_exists(&layout.lock_key(false, key)),
            TxnOp::check_not_exists(&layout.lock_key(true, key)),
        ];
        let mut ancestor = self.key.parent();
        while let Some(parent) = ancestor {
            ops.push(TxnOp::check_not_exists(
                &layout.lock_key(true, parent.as_str()),
            ));
            ancestor = parent.parent();
        }
        let lock_key = self.lock_key();
        ops.push(TxnOp::set(
            &lock_key,
            &self.options.value,
            0,
            Some(&session.id),
        ));
        let token = match self.inner.api.txn("lock", &ops).await? {
            Ok(entries) => entries
                .iter()
                .find(|e| e.key == lock_key)
                .map(|e| e.modify_index)
                .ok_or_else(|| Error::Backend("Consul's transaction returned no entry".into()))?,
            Err(_) => return Ok(None),
        };
        if self.subtree {
            // A lock below may have been taken before ours: its transaction could not see
            // ours, so ours must see it.
            for scope in [false, true] {
                let below = layout.locks_below(scope, key);
                if self.inner.api.any_key(&below).await? {
                    self.inner
                        .api
                        .txn(
                            "unlock",
                            &[
                                TxnOp::check_session(&lock_key, &session.id),
                                TxnOp::delete(&lock_key),
                            ],
                        )
                        .await?
                        .ok();
                    return Ok(None);
                }
            }
        }
        Ok(Some(token))
    }

    /// Turns a taken lock into a guard that renews the session, whose last renewal (or
    /// creation) was sent at `renewed_sent`.
    fn guard(&self, session: Arc<Session>, token: u64, renewed_sent: Instant) -> LockGuard {
        // Consul documents that it ends a session between one and two session TTLs after its
        // last renewal: the lease that `lost()` counts down is one session TTL.
        let leased = LeasedLock {
            key: &self.key,
            fencing_token: token,
            closed: &self.inner.closed,
            held: (&self.inner.held, session.id.clone()),
            ttl: self.inner.session_ttl(self.options.ttl),
            renewed_sent: renewed_sent.into(),
        };
        let renewing = (self.inner.clone(), session.id.clone());
        let lock_key = self.lock_key();
        let (guard, _) = leased.guard(
            move || {
                let (inner, session) = renewing.clone();
                async move { inner.api.renew_session(&session).await }
            },
            move || release(session.clone(), lock_key.clone()),
        );
        guard
    }

    /// The lock area's current index, to wait for the next change after it.
    async fn lock_area_index(&self) -> Result<u64> {
        let area = self.inner.layout.all_locks();
        Ok(self.inner.api.read("lock", &area, true, None).await?.index)
    }
}

#[async_trait]
impl Lock for ConsulLock {
    fn key(&self) -> &Key {
        &self.key
    }

    async fn acquire(&self) -> Result<LockGuard> {
        let session = self.session().await?;
        // While waiting, the session must stay alive too: renew it between attempts.
        let lease = self.inner.session_ttl(self.options.ttl);
        let mut renewed = session.created_sent;
        loop {
            let index = self.lock_area_index().await?;
            if renewed.elapsed() >= lease / 3 {
                let sent = Instant::now();
                if !self.inner.api.renew_session(&session.id).await? {
                    return Err(Error::unavailable(
                        "Consul ended the lock's session while waiting",
                        None,
                    ));
                }
                renewed = sent;
            }
            if let Some(token) = self.attempt(&session).await? {
                return Ok(self.guard(session, token, renewed));
            }
            let wait = (lease / 3).min(BLOCK).max(Duration::from_millis(100));
            let area = self.inner.layout.all_locks();
            tokio::select! {
                read = self.inner.api.read("lock", &area, true, Some((index, wait))) => { read?; }
                _ = self.inner.closed.cancelled() => return Err(Error::Closed),
            }
        }
    }

    async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        let session = self.session().await?;
        match self.attempt(&session).await? {
            Some(token) => {
                let created = session.created_sent;
                Ok(Some(self.guard(session, token, created)))
            }
            None => {
                session.end().await?;
                Ok(None)
            }
        }
    }

    async fn holder(&self) -> Result<Option<LockHolder>> {
        self.inner.closed.check_open()?;
        let read = self
            .inner
            .api
            .read("lock holder", &self.lock_key(), false, None)
            .await?;
        Ok(read
            .entries
            .into_iter()
            .find(|e| e.session.is_some())
            .map(|e| LockHolder {
                value: e.value,
                fencing_token: e.modify_index,
            }))
    }
}

/// Deletes the lock key if the session still holds it, then ends the session; `false` if the
/// lock had been lost.
async fn release(session: Arc<Session>, lock_key: String) -> Result<bool> {
    let inner = session.inner.clone();
    let lost = inner.held.forget(|held| *held == session.id).pop();
    let ops = [
        TxnOp::check_session(&lock_key, &session.id),
        TxnOp::delete(&lock_key),
    ];
    let held = inner.api.txn("unlock", &ops).await?.is_ok();
    session.end().await?;
    Ok(held && lost.is_none_or(|l| !l.is_cancelled()))
}
