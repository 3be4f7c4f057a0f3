//! The delivery half every backend's watch shares: initial events, then a bounded buffer that
//! never blocks the producer, ending with an error item — never silently.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::WatchStream;
use crate::types::{EventKind, WatchEvent, WatchOptions};
use bytes::Bytes;

/// A watch's initial events as the stream must deliver them: followed by the
/// [`EventKind::Synced`] marker when `options` ask for it (never for `since` watches). `path` is
/// the watched key or prefix, as the caller gave it (normalized). [`watch_channel`] applies it;
/// a backend with a stream of its own calls it directly.
pub fn initial_events(
    mut initial: Vec<WatchEvent>,
    path: &str,
    options: &WatchOptions,
) -> Vec<WatchEvent> {
    if options.synced && options.since.is_none() {
        let version = initial.iter().map(|e| e.version).max().unwrap_or(0);
        initial.push(WatchEvent {
            kind: EventKind::Synced,
            key: Key::watched(path),
            value: Bytes::new(),
            version,
        });
    }
    initial
}

/// Creates the watch of `path` (the watched key or prefix, normalized) that `options` ask for:
/// the stream yields `initial` (not counted against the buffer) and, if asked, the
/// [`EventKind::Synced`] marker ([`initial_events`]), then what the [`WatchSender`] sends,
/// buffering up to `options.buffer` (at least 1).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use futures::StreamExt;
/// use kv_core::backend::watch_channel;
/// use kv_core::{Error, EventKind, Key, WatchEvent, WatchOptions};
/// let event = WatchEvent { kind: EventKind::Put, key: Key::parse("k").unwrap(), value: "v".into(), version: 1 };
/// let options = WatchOptions::default().buffer(1);
/// let (mut sender, mut stream) = watch_channel(vec![event.clone()], "k", &options);
/// assert!(sender.send(event.clone()));
/// assert!(!sender.send(event), "the buffer of 1 is full: the watch has lagged");
/// drop(sender);
/// assert!(stream.next().await.unwrap().is_ok()); // initial
/// assert!(stream.next().await.unwrap().is_ok()); // buffered
/// assert!(matches!(stream.next().await.unwrap(), Err(Error::WatchLagged { buffer: 1 })));
/// assert!(stream.next().await.is_none());
/// # }
/// ```
pub fn watch_channel(
    initial: Vec<WatchEvent>,
    path: &str,
    options: &WatchOptions,
) -> (WatchSender, WatchStream) {
    let initial = initial_events(initial, path, options);
    let buffer = options.buffer.max(1);
    let (tx, rx) = mpsc::channel(buffer);
    let end = Arc::new(End::default());
    let sender = WatchSender {
        tx,
        end: end.clone(),
    };
    let stream = ChannelStream {
        initial: initial.into_iter(),
        rx,
        end,
        buffer,
        done: false,
    };
    (sender, Box::pin(stream))
}

/// Why a watch ended, beside the channel so that the channel carries bare events (the hot path
/// of a fan-out to thousands of watchers).
#[derive(Default)]
struct End {
    lagged: AtomicBool,
    error: Mutex<Option<Error>>,
}

/// The producing end of a watch: a backend's reader task holds it.
pub struct WatchSender {
    tx: mpsc::Sender<WatchEvent>,
    end: Arc<End>,
}

impl WatchSender {
    /// Queues an event without waiting. Returns `false` when the watch is over — the consumer
    /// dropped the stream, or fell a full buffer behind (it will get `WatchLagged`): stop
    /// producing and drop the sender.
    pub fn send(&mut self, event: WatchEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.end.lagged.store(true, Ordering::Release);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Ends the watch with `error` after the events already queued.
    pub fn fail(self, error: Error) {
        *self.end.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// True once the consumer has dropped the stream.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes when the consumer drops the stream.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

struct ChannelStream {
    initial: std::vec::IntoIter<WatchEvent>,
    rx: mpsc::Receiver<WatchEvent>,
    end: Arc<End>,
    buffer: usize,
    done: bool,
}

impl Stream for ChannelStream {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(event) = self.initial.next() {
            return Poll::Ready(Some(Ok(event)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            // The sender is gone: for lag, with an error, or (a backend bug) for no reason.
            Poll::Ready(None) => {
                self.done = true;
                let failed = self
                    .end
                    .error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                let error = match failed {
                    _ if self.end.lagged.load(Ordering::Acquire) => Error::WatchLagged {
                        buffer: self.buffer,
                    },
                    Some(error) => error,
                    None => Error::unavailable(
                        "the watch ended without a reason from the backend",
                        None,
                    ),
                };
                Poll::Ready(Some(Err(error)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Re-establishes a watch whose connection was lost: calls `connect` until it succeeds, fails
/// with an error that is not transient (returned as is), `patience` passes or the consumer
/// leaves (then `Unavailable`), or `closed` fires (`Closed`). Backs off from 100 ms to 1 s.
pub async fn resume_watch<T, F, Fut>(
    sender: &WatchSender,
    closed: &tokio_util::sync::CancellationToken,
    patience: std::time::Duration,
    mut connect: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        if closed.is_cancelled() {
            return Err(Error::Closed);
        }
        match connect().await {
            Ok(connection) => {
                tracing::debug!(target: "kv", "watch resumed");
                return Ok(connection);
            }
            Err(error) if !error.is_transient() => return Err(error),
            Err(error) if tokio::time::Instant::now() >= deadline || sender.is_closed() => {
                tracing::warn!(target: "kv", %error, "watch lost: could not be resumed in time");
                return Err(Error::unavailable(
                    format!("the watch was lost and could not be resumed: {error}"),
                    None,
                ));
            }
            Err(error) => {
                tracing::debug!(target: "kv", %error, "watch connection lost; resuming");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
        }
    }
}
