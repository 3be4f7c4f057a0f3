//! [`Holdings`]: what a store handle holds that its `close()` lets go of.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

/// The locks or leases a handle holds, each with the `lost` token that tells its user it
/// ended. A lock or lease joins when it is taken ([`Holdings::hold`]), leaves when it is
/// released or revoked ([`Holdings::forget`]), and `close()` takes what is left
/// ([`Holdings::take_all`], which fires each `lost`) to let go of it on the server.
#[derive(Debug)]
pub struct Holdings<T> {
    entries: Mutex<Vec<(T, CancellationToken)>>,
}

impl<T> Default for Holdings<T> {
    fn default() -> Self {
        Holdings {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Holdings<T> {
    /// Records `item`, whose user `lost` tells when it ends.
    pub fn hold(&self, item: T, lost: CancellationToken) {
        self.lock().push((item, lost));
    }

    /// Forgets the items `matches` picks (released or revoked: `close()` has nothing to do
    /// for them); returns their `lost` tokens.
    pub fn forget(&self, matches: impl Fn(&T) -> bool) -> Vec<CancellationToken> {
        let mut entries = self.lock();
        let mut forgotten = Vec::new();
        let mut index = 0;
        while index < entries.len() {
            if matches(&entries[index].0) {
                forgotten.push(entries.swap_remove(index).1);
            } else {
                index += 1;
            }
        }
        forgotten
    }

    /// For `close()`: every item still held, each one's `lost` fired (its user learns first,
    /// before the server is told).
    pub fn take_all(&self) -> Vec<T> {
        std::mem::take(&mut *self.lock())
            .into_iter()
            .map(|(item, lost)| {
                lost.cancel();
                item
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(T, CancellationToken)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_takes_what_release_left_and_fires_its_lost() {
        let held = Holdings::default();
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        held.hold(1, a.clone());
        held.hold(2, b.clone());
        assert_eq!(held.forget(|item| *item == 1).len(), 1);
        assert!(!a.is_cancelled(), "a release fires no lost");
        assert_eq!(held.take_all(), [2]);
        assert!(b.is_cancelled());
        assert!(
            held.take_all().is_empty(),
            "a second close has nothing to do"
        );
    }
}
