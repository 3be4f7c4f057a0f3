//! The delivery half every backend's watch shares: initial events, then a bounded buffer that
//! never blocks the producer, ending with an error item — never silently.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::error::{Error, Result};
use crate::store::WatchStream;
use crate::types::WatchEvent;

/// Creates a watch: the stream yields `initial` (not counted against the buffer), then what the
/// [`WatchSender`] sends. `buffer` must be at least 1.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use futures::StreamExt;
/// use kv_core::{Error, EventKind, Key, WatchEvent, watch_channel};
/// let event = WatchEvent { kind: EventKind::Put, key: Key::parse("k").unwrap(), value: "v".into(), version: 1 };
/// let (mut sender, mut stream) = watch_channel(vec![event.clone()], 1);
/// assert!(sender.send(event.clone()));
/// assert!(!sender.send(event), "the buffer of 1 is full: the watch has lagged");
/// drop(sender);
/// assert!(stream.next().await.unwrap().is_ok()); // initial
/// assert!(stream.next().await.unwrap().is_ok()); // buffered
/// assert!(matches!(stream.next().await.unwrap(), Err(Error::WatchLagged { buffer: 1 })));
/// assert!(stream.next().await.is_none());
/// # }
/// ```
pub fn watch_channel(initial: Vec<WatchEvent>, buffer: usize) -> (WatchSender, WatchStream) {
    let buffer = buffer.max(1);
    // One slot more than the buffer, kept for the terminal error.
    let (tx, rx) = mpsc::channel(buffer + 1);
    let lagged = Arc::new(AtomicBool::new(false));
    let sender = WatchSender {
        tx,
        lagged: lagged.clone(),
    };
    let stream = ChannelStream {
        initial: initial.into_iter(),
        rx,
        lagged,
        buffer,
        done: false,
    };
    (sender, Box::pin(stream))
}

/// The producing end of a watch: a backend's reader task holds it.
pub struct WatchSender {
    tx: mpsc::Sender<Result<WatchEvent>>,
    lagged: Arc<AtomicBool>,
}

impl WatchSender {
    /// Queues an event without waiting. Returns `false` when the watch is over — the consumer
    /// dropped the stream, or fell a full buffer behind (it will get `WatchLagged`): stop
    /// producing and drop the sender.
    pub fn send(&mut self, event: WatchEvent) -> bool {
        if self.tx.capacity() <= 1 {
            self.lagged.store(true, Ordering::Release);
            return false;
        }
        match self.tx.try_send(Ok(event)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Release);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Ends the watch with `error` after the events already queued.
    pub fn fail(self, error: Error) {
        let _ = self.tx.try_send(Err(error));
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
    rx: mpsc::Receiver<Result<WatchEvent>>,
    lagged: Arc<AtomicBool>,
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
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.done = true;
                let error = if self.lagged.load(Ordering::Acquire) {
                    Error::WatchLagged {
                        buffer: self.buffer,
                    }
                } else {
                    Error::unavailable("the watch ended without a reason from the backend", None)
                };
                Poll::Ready(Some(Err(error)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
