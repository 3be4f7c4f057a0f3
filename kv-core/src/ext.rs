//! Conveniences every [`Store`] has: JSON values and read-modify-write loops.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::key::{Key, normalize_key};
use crate::store::Store;
use crate::store::WatchStream;
use crate::txn::{Condition, Txn, TxnOpResult};
use crate::types::{EventKind, KvPair, Precondition, PutOptions, WatchOptions};

/// How many times [`StoreExt::update`] reads and tries again after another writer won.
pub const UPDATE_ATTEMPTS: usize = 16;

/// Conveniences on every [`Store`] (`Arc<dyn Store>` included), built on its methods only.
///
/// ```
/// # async fn demo(store: &dyn kv_core::Store) -> kv_core::Result<()> {
/// use kv_core::{PutOptions, StoreExt};
/// #[derive(serde::Serialize, serde::Deserialize, Default)]
/// struct Config { replicas: u32 }
///
/// store.put_json("app/config", &Config { replicas: 3 }, PutOptions::default()).await?;
/// // Read, change, write back only if nobody else wrote in between (retried if they did).
/// store.update_json("app/config", |c: Option<Config>| {
///     let mut c = c.unwrap_or_default();
///     c.replicas += 1;
///     c
/// }).await?;
/// let (config, _version) = store.get_json::<Config>("app/config").await?.unwrap();
/// assert_eq!(config.replicas, 4);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StoreExt: Store {
    /// The value at `key` decoded from JSON, with its version; `None` if absent. A value that
    /// is not valid JSON for `T` is [`Error::Decode`].
    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, u64)>> {
        let Some(pair) = self.get(key).await? else {
            return Ok(None);
        };
        let value = decode(key, &pair.value)?;
        Ok(Some((value, pair.version)))
    }

    /// Writes `value` as JSON; returns the new version. A value JSON cannot represent (a map
    /// with non-string keys) is [`Error::InvalidArgument`] and nothing is written.
    async fn put_json<T: Serialize + Sync + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: PutOptions,
    ) -> Result<u64> {
        let bytes = encode(key, value)?;
        self.put(key, &bytes, options).await
    }

    /// Read-modify-write: reads `key`, asks `f` for its new value (given the current one,
    /// `None` if absent) and writes it only if the key is still as read (a CAS on its
    /// version, or "must not exist"). If another writer won in between, reads again and calls
    /// `f` again, up to [`UPDATE_ATTEMPTS`] times with a short backoff, then fails with
    /// [`Error::Conflict`]. Returns the new version. An error from `f` stops the update with
    /// nothing written.
    ///
    /// Other errors are returned at once. After [`Error::is_outcome_unknown`] the write may
    /// have landed: read the key before deciding to call `update` again.
    async fn update<F>(&self, key: &str, f: F) -> Result<u64>
    where
        F: FnMut(Option<&[u8]>) -> Result<Vec<u8>> + Send,
    {
        let write = |current: Option<KvPair>, new: Vec<u8>| async move {
            let precondition = match current {
                Some(pair) => Precondition::Version(pair.version),
                None => Precondition::MustNotExist,
            };
            self.atomic_put(key, &new, precondition, PutOptions::default())
                .await
        };
        read_modify_write(self, key, f, |_| true, write).await
    }

    /// [`StoreExt::update`] that writes only while every `fence` holds (conditions on other
    /// keys, checked in the same transaction as the write — e.g. [`Leadership::fence`]:
    /// "only while I lead"). A fence that fails stops the update with
    /// [`Error::Conflict`] naming the fence's key and nothing written; a change of `key` by
    /// another writer reads again, as `update` does. Needs transactions
    /// ([`Capabilities::max_txn_ops`](crate::Capabilities::max_txn_ops) ≥ fences + 2).
    ///
    /// [`Leadership::fence`]: crate::Leadership::fence
    async fn update_fenced<F>(&self, key: &str, fences: &[(String, Condition)], f: F) -> Result<u64>
    where
        F: FnMut(Option<&[u8]>) -> Result<Vec<u8>> + Send,
    {
        let key = normalize_key(key)?;
        let write = |current: Option<KvPair>, new: Vec<u8>| async move {
            // Fences first: the conflict names the first condition that failed.
            let txn = fences.iter().fold(Txn::new(), |txn, (fence, condition)| {
                txn.when(fence.clone(), condition.clone())
            });
            let txn = match current {
                Some(pair) => txn.when(key, Condition::Version(pair.version)),
                None => txn.when(key, Condition::Missing),
            };
            match self.txn(txn.put(key, new)).await?.first() {
                Some(TxnOpResult::Put { version }) => Ok(*version),
                _ => Err(Error::Backend(
                    "a transaction of one put answered no version".into(),
                )),
            }
        };
        // A failed fence is returned as it is; only a change of `key` reads again.
        let ours = |failed: &str| normalize_key(failed).ok() == Some(key);
        read_modify_write(self, key, f, ours, write).await
    }

    /// Claims `fence_key` for the holder of fencing token `token` (a lock's
    /// [`LockGuard::fencing_token`]): the key keeps the highest token that claimed it, and the
    /// returned fence — the key at the version this claim left — holds until a holder with a
    /// higher token claims it. Pass it to [`StoreExt::update_fenced`] (or a [`Txn`]) and a
    /// write lands only while no later holder has claimed the fence: a holder that lost its
    /// lock, and was paused past it without seeing `lost()` fire, writes nothing once the next
    /// holder has claimed. Claim before the first write of each hold. A claim with a lower
    /// token than the key's is [`Error::Conflict`] naming the key, and changes nothing; the
    /// same token again returns the fence it holds.
    ///
    /// [`LockGuard::fencing_token`]: crate::LockGuard::fencing_token
    async fn claim_fence(&self, fence_key: &str, token: u64) -> Result<(String, Condition)> {
        let key = normalize_key(fence_key)?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get(key).await?;
            let claimed = current
                .as_ref()
                .map(|pair| {
                    std::str::from_utf8(&pair.value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| {
                            Error::invalid_argument(format!(
                                "{key} does not hold a fencing token; use a key of its own"
                            ))
                        })
                })
                .transpose()?;
            let version = match (claimed, current) {
                (Some(claimed), _) if claimed > token => {
                    return Err(Error::conflict(
                        key,
                        format!("claimed by a later holder (token {claimed} > {token})"),
                    ));
                }
                (Some(claimed), Some(pair)) if claimed == token => pair.version,
                (_, current) => {
                    let expected = current.map_or(Precondition::MustNotExist, |p| {
                        Precondition::Version(p.version)
                    });
                    let value = token.to_string();
                    match self
                        .atomic_put(key, value.as_bytes(), expected, PutOptions::default())
                        .await
                    {
                        Ok(version) => version,
                        // Claimed meanwhile: read again (a higher token then refuses).
                        Err(Error::Conflict { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            return Ok((key.to_owned(), Condition::Version(version)));
        }
        Err(Error::conflict(
            key,
            format!("other holders claimed it {UPDATE_ATTEMPTS} times in a row"),
        ))
    }

    /// [`Store::watch`] (with `tree`, [`Store::watch_tree`]) with each put's value decoded
    /// from JSON as `T`: events keep their kind, key and version, and the
    /// [`EventKind::Synced`](crate::EventKind::Synced) marker passes through (`value: None`,
    /// as for deletes). A value that is not valid JSON for `T` is an `Err(`[`Error::Decode`]`)`
    /// item naming the key, and the watch goes on; any other error ends it, as for every watch.
    ///
    /// ```
    /// # async fn demo(store: &dyn kv_core::Store) -> kv_core::Result<()> {
    /// use futures::StreamExt;
    /// use kv_core::{StoreExt, WatchOptions};
    /// #[derive(serde::Deserialize)]
    /// struct Config { replicas: u32 }
    /// let mut configs = store.watch_json::<Config>("app/config", false, WatchOptions::default()).await?;
    /// while let Some(event) = configs.next().await {
    ///     if let Some(config) = event?.value {
    ///         println!("replicas: {}", config.replicas);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    async fn watch_json<T>(
        &self,
        key: &str,
        tree: bool,
        options: WatchOptions,
    ) -> Result<JsonWatchStream<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let events = match tree {
            true => self.watch_tree(key, options).await?,
            false => self.watch(key, options).await?,
        };
        Ok(Box::pin(JsonEvents {
            events,
            _type: std::marker::PhantomData,
        }))
    }

    /// [`StoreExt::update`] on a JSON value: `f` gets the decoded value (`None` if absent) and
    /// returns the new one. A current value that is not valid JSON for `T` is
    /// [`Error::Decode`] and nothing is written.
    async fn update_json<T, F>(&self, key: &str, mut f: F) -> Result<u64>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(Option<T>) -> T + Send,
    {
        self.update(key, |current| {
            let decoded = current.map(|bytes| decode::<T>(key, bytes)).transpose()?;
            encode(key, &f(decoded))
        })
        .await
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// The loop of [`StoreExt::update`] and [`StoreExt::update_fenced`]: reads `key`, asks `f`
/// for the new value, `write`s it given what was read; a [`Error::Conflict`] whose key `ours`
/// accepts (another writer changed the key) reads again, up to [`UPDATE_ATTEMPTS`] times with
/// a short backoff; anything else is returned as it is.
async fn read_modify_write<S, F, W, Fut>(
    store: &S,
    key: &str,
    mut f: F,
    ours: impl Fn(&str) -> bool,
    write: W,
) -> Result<u64>
where
    S: Store + ?Sized,
    F: FnMut(Option<&[u8]>) -> Result<Vec<u8>>,
    W: Fn(Option<KvPair>, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut pause = Duration::from_millis(1);
    let mut attempt = 1;
    loop {
        let current = store.get(key).await?;
        let new = f(current.as_ref().map(|pair| &pair.value[..]))?;
        match write(current, new).await {
            Err(Error::Conflict { key: failed, .. }) if ours(&failed) => {
                if attempt >= UPDATE_ATTEMPTS {
                    return Err(Error::conflict(
                        failed,
                        format!("other writers changed it {UPDATE_ATTEMPTS} times in a row"),
                    ));
                }
                attempt += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Decode {
        key: key.to_owned(),
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::invalid_argument(format!("the value for {key} is not JSON: {e}")))
}

/// A watch event whose value was decoded from JSON ([`StoreExt::watch_json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonEvent<T> {
    /// Put, Delete or Synced.
    pub kind: EventKind,
    /// The key that changed.
    pub key: Key,
    /// The decoded value of a put; `None` for deletes and the `Synced` marker.
    pub value: Option<T>,
    /// The version of the change.
    pub version: u64,
}

/// The stream [`StoreExt::watch_json`] returns.
pub type JsonWatchStream<T> = Pin<Box<dyn Stream<Item = Result<JsonEvent<T>>> + Send + 'static>>;

/// Decodes a watch's puts as they come.
struct JsonEvents<T> {
    events: WatchStream,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Stream for JsonEvents<T> {
    type Item = Result<JsonEvent<T>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let event = match self.events.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => event,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let value = match event.kind {
            EventKind::Put => match decode::<T>(event.key.as_str(), &event.value) {
                Ok(value) => Some(value),
                Err(error) => return Poll::Ready(Some(Err(error))),
            },
            _ => None,
        };
        Poll::Ready(Some(Ok(JsonEvent {
            kind: event.kind,
            key: event.key,
            value,
            version: event.version,
        })))
    }
}
