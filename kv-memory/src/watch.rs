//! The watch stream: initial events, then the live channel, ending with an error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_core::Stream;
use kv_core::{Error, Result, WatchEvent};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::namespace::Namespace;
use crate::state::Registration;

/// A watch on a memory namespace. Unregisters itself when dropped.
pub(crate) struct MemoryWatch {
    namespace: Arc<Namespace>,
    path: String,
    registration: Registration,
    initial: std::vec::IntoIter<WatchEvent>,
    buffer: usize,
    /// Fires when the store handle closes.
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl MemoryWatch {
    pub fn new(
        namespace: Arc<Namespace>,
        path: String,
        mut registration: Registration,
        buffer: usize,
        closed: WaitForCancellationFutureOwned,
    ) -> MemoryWatch {
        let initial = std::mem::take(&mut registration.initial).into_iter();
        MemoryWatch {
            namespace,
            path,
            registration,
            initial,
            buffer,
            closed: Box::pin(closed),
            done: false,
        }
    }

    fn finish(&mut self, error: Error) -> Poll<Option<Result<WatchEvent>>> {
        self.done = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for MemoryWatch {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.closed.as_mut().poll(cx).is_ready() {
            return self.finish(Error::Closed);
        }
        if let Some(event) = self.initial.next() {
            return Poll::Ready(Some(Ok(event)));
        }
        match self.registration.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            // The sender is gone: dropped for lag, or the namespace itself is gone.
            Poll::Ready(None) => {
                let error = if self.registration.lagged.load(Ordering::Acquire) {
                    Error::WatchLagged {
                        buffer: self.buffer,
                    }
                } else {
                    Error::Closed
                };
                self.finish(error)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.namespace
            .state
            .write()
            .unwatch(&self.path, self.registration.id);
    }
}
