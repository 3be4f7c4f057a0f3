//! The bounded ring of recent events behind `WatchOptions::since`.

use std::collections::VecDeque;

use kv_core::{Error, Result, WatchEvent};

/// The last `capacity` events, oldest first.
pub(crate) struct History {
    events: VecDeque<WatchEvent>,
    capacity: usize,
    /// Every event with a version at or above this one is still in `events`.
    complete_from: u64,
}

impl History {
    pub fn new(capacity: usize) -> History {
        History {
            events: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            complete_from: 1,
        }
    }

    /// An empty history after a restart at `revision`: nothing before it can be replayed.
    pub fn starting_after(capacity: usize, revision: u64) -> History {
        History {
            complete_from: revision + 1,
            ..History::new(capacity)
        }
    }

    pub fn push(&mut self, event: &WatchEvent) {
        if self.capacity == 0 {
            return;
        }
        if self.events.len() == self.capacity
            && let Some(evicted) = self.events.pop_front()
        {
            self.complete_from = evicted.version + 1;
        }
        self.events.push_back(event.clone());
    }

    /// The retained events with a version above `since` that `matches` accepts, or
    /// `Error::Compacted` if some of them are no longer kept.
    pub fn since(
        &self,
        since: u64,
        matches: impl Fn(&WatchEvent) -> bool,
    ) -> Result<Vec<WatchEvent>> {
        if since.saturating_add(1) < self.complete_from {
            return Err(Error::Compacted {
                requested: since,
                oldest: self.complete_from,
            });
        }
        let start = self.events.partition_point(|e| e.version <= since);
        Ok(self
            .events
            .range(start..)
            .filter(|e| matches(e))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_core::{Bytes, EventKind, Key};

    fn event(version: u64) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            key: Key::parse("k").unwrap(),
            value: Bytes::new(),
            version,
        }
    }

    #[test]
    fn keeps_the_last_events_and_reports_compaction() {
        let mut history = History::new(3);
        for v in 1..=5 {
            history.push(&event(v));
        }
        let versions = |since| -> Vec<u64> {
            history
                .since(since, |_| true)
                .unwrap()
                .iter()
                .map(|e| e.version)
                .collect()
        };
        assert_eq!(versions(2), vec![3, 4, 5]);
        assert_eq!(versions(4), vec![5]);
        assert_eq!(versions(9), Vec::<u64>::new());
        assert!(matches!(
            history.since(1, |_| true),
            Err(Error::Compacted {
                requested: 1,
                oldest: 3
            })
        ));
    }
}
