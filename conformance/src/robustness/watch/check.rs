//! The watchers' checker: their logs against the history of writes (the rules in the
//! module's documentation above).

use super::*;

/// The writes of the history by key and value: what a delivered put must match.
struct Writes<'a> {
    by_value: HashMap<(&'a str, &'a str), &'a Op>,
    /// Acknowledged puts by version (every key; a transaction's share one).
    acknowledged: BTreeMap<u64, Vec<&'a Op>>,
    /// The two acknowledged writes of each transaction: (key, value) twice.
    txns: Vec<[(&'a str, &'a str); 2]>,
    /// Acknowledged deletes per key.
    deletes: HashMap<&'a str, Vec<&'a Op>>,
}

impl<'a> Writes<'a> {
    fn new(ops: &'a [Op]) -> Writes<'a> {
        let mut writes = Writes {
            by_value: HashMap::new(),
            acknowledged: BTreeMap::new(),
            txns: Vec::new(),
            deletes: HashMap::new(),
        };
        let mut last: Option<&Op> = None;
        for op in ops {
            match (&op.call, &op.outcome) {
                (Call::Put(v) | Call::Cas(_, v), outcome) => {
                    writes.by_value.insert((&op.key, v), op);
                    if let Outcome::Written(version) = outcome {
                        writes.acknowledged.entry(*version).or_default().push(op);
                        // A transaction's two writes: recorded together, same client and times.
                        if let Some(first) = last.filter(|l| {
                            (l.client, l.start, l.end) == (op.client, op.start, op.end)
                                && l.key != op.key
                                && matches!(l.outcome, Outcome::Written(_))
                        }) && let Call::Put(v0) | Call::Cas(_, v0) = &first.call
                        {
                            writes.txns.push([(&first.key, v0), (&op.key, v)]);
                        }
                    }
                }
                (Call::Delete, Outcome::Deleted(_)) => {
                    writes.deletes.entry(&op.key).or_default().push(op)
                }
                _ => {}
            }
            last = Some(op);
        }
        writes
    }

    /// The end of the write of `value` to `key` (`u64::MAX` when unknown).
    fn ended(&self, key: &str, value: &str) -> u64 {
        match self.by_value.get(&(key, value)) {
            Some(op) if matches!(op.outcome, Outcome::Written(_)) => op.end,
            _ => u64::MAX,
        }
    }
}

/// What the sentinel and the final reads found, for the liveness check.
#[derive(Debug, Clone, Default)]
pub struct Final {
    /// The sentinel's version; `None` if it could not be written.
    pub sentinel: Option<u64>,
    /// Each key's final state: value and version, or absent.
    pub state: BTreeMap<String, Option<(String, u64)>>,
}

/// Checks the watchers' logs against the history (see the module doc); returns the
/// violations, one line each.
pub fn check(logs: &[WatchLog], ops: &[Op], end: &Final, coalesces: bool) -> Vec<String> {
    let writes = Writes::new(ops);
    let mut problems = Vec::new();
    for log in logs {
        let w = log.watcher;
        let mut problem = |text: String| problems.push(format!("watcher {w}: {text}"));
        let mut last_global: Option<u64> = None;
        let mut last_per_key: HashMap<&str, &Seen> = HashMap::new();
        for segment in &log.segments {
            for e in &segment.events {
                if let Some(key) = log.key.as_deref().filter(|k| *k != e.key) {
                    problem(format!(
                        "watching {key} alone, it delivered {} @ {}, another key",
                        e.key, e.version
                    ));
                }
                if e.put {
                    match writes.by_value.get(&(e.key.as_str(), e.value.as_str())) {
                        None if e.key.starts_with("r/") && e.key != SENTINEL => problem(format!(
                            "delivered {} = {} @ {}, a value never written",
                            e.key, e.value, e.version
                        )),
                        Some(op) => match &op.outcome {
                            Outcome::Written(v) if *v != e.version => problem(format!(
                                "delivered {} = {} @ {}; the write was acknowledged at version {v}",
                                e.key, e.value, e.version
                            )),
                            Outcome::Failed(why) => problem(format!(
                                "delivered {} = {} @ {}, written by a call that failed saying nothing was applied ({why})",
                                e.key, e.value, e.version
                            )),
                            _ => {}
                        },
                        None => {}
                    }
                }
                if let Some(prev) = last_per_key.get(e.key.as_str())
                    && e.version <= prev.version
                {
                    problem(format!(
                        "{} @ {} delivered after {} @ {} (versions of a key must increase; a \
                         repeat is a duplicate)",
                        e.key, e.version, prev.key, prev.version
                    ));
                }
                if !coalesces && !e.initial {
                    if let Some(prev) = last_global
                        && e.version < prev
                    {
                        problem(format!(
                            "{} @ {} delivered after version {prev}: out of order",
                            e.key, e.version
                        ));
                    }
                    last_global = Some(last_global.map_or(e.version, |p| p.max(e.version)));
                }
                last_per_key.insert(&e.key, e);
            }
            if coalesces {
                continue;
            }
            // No gaps: the acknowledged writes this segment had to deliver.
            let live: Vec<&Seen> = segment.events.iter().filter(|e| !e.initial).collect();
            let Some(hi) = live.iter().map(|e| e.version).max() else {
                continue;
            };
            let delivered: std::collections::HashSet<(u64, &str)> = segment
                .events
                .iter()
                .map(|e| (e.version, e.key.as_str()))
                .collect();
            let range = match segment.since {
                Some(s) => (s + 1)..=hi,
                None => 0..=hi,
            };
            let watched = |op: &Op| log.key.as_deref().is_none_or(|k| op.key == k);
            for (version, op) in writes
                .acknowledged
                .range(range)
                .flat_map(|(v, ops)| ops.iter().map(move |op| (v, op)))
                .filter(|(_, op)| watched(op))
            {
                if segment.since.is_none() && op.start <= segment.ready {
                    continue;
                }
                if !delivered.contains(&(*version, op.key.as_str())) {
                    problem(format!(
                        "missed {} (acknowledged at version {version}, invoked at {:.1} ms) in a \
                         segment {} that delivered up to version {hi}",
                        op.describe(),
                        op.start as f64 / 1e6,
                        segment
                            .since
                            .map_or("started from the current state".into(), |s| format!(
                                "resumed after {s}"
                            ))
                    ));
                }
            }
            // Deletes between two consecutive puts of a key.
            let mut previous: HashMap<&str, &Seen> = HashMap::new();
            for e in &segment.events {
                if let Some(p) = previous.get(e.key.as_str())
                    && p.put
                    && e.put
                {
                    let after = writes.ended(&p.key, &p.value);
                    let before = writes
                        .by_value
                        .get(&(e.key.as_str(), e.value.as_str()))
                        .map_or(0, |op| op.start);
                    if let Some(delete) = writes.deletes.get(e.key.as_str()).and_then(|ds| {
                        ds.iter()
                            .find(|d| after != u64::MAX && d.start > after && d.end < before)
                    }) {
                        problem(format!(
                            "no Delete event between {} = {} @ {} and {} @ {}, though {} \
                             happened between the two writes",
                            e.key,
                            p.value,
                            p.version,
                            e.value,
                            e.version,
                            delete.describe()
                        ));
                    }
                }
                previous.insert(&e.key, e);
            }
            // A transaction's events arrive together (as changes: the initial state is per key).
            let position: HashMap<(&str, &str), usize> = segment
                .events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.put && !e.initial)
                .map(|(i, e)| ((e.key.as_str(), e.value.as_str()), i))
                .collect();
            for [a, b] in &writes.txns {
                if let (Some(i), Some(j)) = (position.get(a), position.get(b))
                    && i.abs_diff(*j) != 1
                {
                    problem(format!(
                        "the transaction writing {} = {} and {} = {} was delivered as events \
                         {i} and {j}, with others between",
                        a.0, a.1, b.0, b.1
                    ));
                }
            }
        }
        // Never silent.
        if log.ended.is_some() {
            continue;
        }
        if let Some(key) = &log.key {
            let state = end.state.get(key).cloned().unwrap_or_default();
            if !log.agrees(key, &state) {
                problem(format!(
                    "watching {key} alone, it did not deliver the key's final state {state:?} \
                     within {LIVENESS_BOUND:?} nor end with an error"
                ));
            }
            continue;
        }
        let Some(sentinel) = end.sentinel else {
            continue;
        };
        if !log
            .events()
            .any(|e| e.put && e.key == SENTINEL && e.version == sentinel)
        {
            problem(format!(
                "neither delivered the last write (version {sentinel}) within {LIVENESS_BOUND:?} \
                 nor ended with an error"
            ));
            continue;
        }
        for (key, state) in &end.state {
            let last = last_per_key.get(key.as_str());
            if !log.agrees(key, state) {
                problem(format!(
                    "its last event for {key} is {:?}, the key's final state is {state:?}",
                    last.map(|e| (if e.put { "put" } else { "delete" }, &e.value, e.version))
                ));
            }
        }
    }
    // Two watchers agree on the versions both covered.
    if !coalesces {
        for (i, a) in logs.iter().enumerate() {
            for b in &logs[i + 1..] {
                problems.extend(disagreement(a, b));
            }
        }
    }
    problems
}

/// A stretch of versions one segment covered, and its events: (version, key) → put.
type Covered = (u64, u64, BTreeMap<(u64, String), bool>);

/// Where two watchers that both saw a stretch of versions disagree about it (about the one
/// key either watches alone, if it does).
fn disagreement(a: &WatchLog, b: &WatchLog) -> Option<String> {
    let only = a.key.as_deref().or(b.key.as_deref());
    if a.key.is_some() && b.key.is_some() && a.key != b.key {
        return None;
    }
    let covered = |log: &WatchLog| -> Vec<Covered> {
        log.segments
            .iter()
            .filter_map(|s| {
                let live: Vec<&Seen> = s
                    .events
                    .iter()
                    .filter(|e| !e.initial && only.is_none_or(|k| e.key == k))
                    .collect();
                let lo = live.first()?.version;
                let hi = live.iter().map(|e| e.version).max()?;
                let lo = s.since.map_or(lo, |since| since + 1);
                let events = live
                    .iter()
                    .map(|e| ((e.version, e.key.clone()), e.put))
                    .collect();
                Some((lo, hi, events))
            })
            .collect()
    };
    for (alo, ahi, aev) in covered(a) {
        for (blo, bhi, bev) in covered(b) {
            let (lo, hi) = (alo.max(blo), ahi.min(bhi));
            if lo > hi {
                continue;
            }
            let within = |events: &BTreeMap<(u64, String), bool>| -> Vec<(u64, String, bool)> {
                events
                    .iter()
                    .filter(|((v, _), _)| (lo..=hi).contains(v))
                    .map(|((v, k), put)| (*v, k.clone(), *put))
                    .collect()
            };
            let (x, y) = (within(&aev), within(&bev));
            if x != y {
                let only_a: Vec<_> = x.iter().filter(|e| !y.contains(e)).take(3).collect();
                let only_b: Vec<_> = y.iter().filter(|e| !x.contains(e)).take(3).collect();
                return Some(format!(
                    "watchers {} and {} disagree on versions {lo}..={hi}: only {}: {only_a:?}, \
                     only {}: {only_b:?}",
                    a.watcher, b.watcher, a.watcher, b.watcher
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: usize, key: &str, value: &str, version: u64, start: u64, end: u64) -> Op {
        Op {
            client,
            key: key.into(),
            call: Call::Put(value.into()),
            outcome: Outcome::Written(version),
            start,
            end,
        }
    }

    fn seen(key: &str, value: &str, version: u64) -> Seen {
        Seen {
            at: 0,
            put: !value.is_empty(),
            key: key.into(),
            value: value.into(),
            version,
            initial: false,
        }
    }

    /// Writes a=1@1, b=2@2, delete a (between 20 and 25), a=3@4; the sentinel @5.
    fn history() -> (Vec<Op>, Final) {
        let ops = vec![
            put(0, "r/a", "1", 1, 10, 12),
            put(1, "r/b", "2", 2, 14, 16),
            Op {
                client: 0,
                key: "r/a".into(),
                call: Call::Delete,
                outcome: Outcome::Deleted(true),
                start: 20,
                end: 25,
            },
            put(1, "r/a", "3", 4, 30, 32),
        ];
        let mut end = Final {
            sentinel: Some(5),
            ..Final::default()
        };
        end.state.insert("r/a".into(), Some(("3".into(), 4)));
        end.state.insert("r/b".into(), Some(("2".into(), 2)));
        (ops, end)
    }

    fn log(watcher: usize, since: Option<u64>, events: Vec<Seen>) -> WatchLog {
        WatchLog {
            watcher,
            key: None,
            segments: vec![Segment {
                since,
                ready: 5,
                events,
                error: None,
            }],
            ended: None,
        }
    }

    /// Asserts that the check finds a problem naming `needle`.
    fn caught(logs: &[WatchLog], ops: &[Op], end: &Final, coalesces: bool, needle: &str) {
        let problems = check(logs, ops, end, coalesces);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle}: {problems:?}"
        );
    }

    fn complete() -> Vec<Seen> {
        vec![
            seen("r/a", "1", 1),
            seen("r/b", "2", 2),
            seen("r/a", "", 3),
            seen("r/a", "3", 4),
            seen(SENTINEL, "end", 5),
        ]
    }

    #[test]
    fn a_complete_stream_passes() {
        let (ops, end) = history();
        let logs = [
            log(0, None, complete()),
            log(1, Some(1), complete()[1..].to_vec()),
        ];
        assert_eq!(check(&logs, &ops, &end, false), Vec::<String>::new());
    }

    fn key_log(watcher: usize, events: Vec<Seen>) -> WatchLog {
        WatchLog {
            key: Some("r/a".into()),
            ..log(watcher, None, events)
        }
    }

    #[test]
    fn a_key_watcher_is_held_to_its_key() {
        let (ops, end) = history();
        let only_a: Vec<Seen> = complete().into_iter().filter(|e| e.key == "r/a").collect();
        let logs = [log(0, None, complete()), key_log(2, only_a.clone())];
        assert_eq!(check(&logs, &ops, &end, false), Vec::<String>::new());
        // A write of its key missed; one of another key delivered; silent at the end.
        let mut missed = only_a.clone();
        missed.remove(0);
        caught(&[key_log(2, missed)], &ops, &end, false, "missed");
        let mut other = only_a.clone();
        other.insert(1, seen("r/b", "2", 2));
        caught(&[key_log(2, other)], &ops, &end, false, "another key");
        let silent = only_a[..2].to_vec();
        caught(
            &[key_log(2, silent)],
            &ops,
            &end,
            true,
            "watching r/a alone",
        );
        // It never needs the sentinel, and disagrees with a tree watcher only about its key.
        let mut tree = complete();
        tree.remove(1);
        let problems = check(&[key_log(2, only_a), log(0, None, tree)], &ops, &end, false);
        assert!(
            problems
                .iter()
                .all(|p| !p.contains("disagree") && !p.starts_with("watcher 2")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_missed_write_is_caught() {
        let (ops, end) = history();
        let mut events = complete();
        events.remove(1);
        caught(&[log(0, None, events)], &ops, &end, false, "missed");
    }

    #[test]
    fn a_missed_delete_is_caught() {
        let (ops, end) = history();
        let mut events = complete();
        events.remove(2);
        caught(
            &[log(0, None, events)],
            &ops,
            &end,
            false,
            "no Delete event",
        );
    }

    #[test]
    fn a_duplicate_and_a_backwards_event_are_caught() {
        let (ops, end) = history();
        let mut events = complete();
        events.insert(2, seen("r/b", "2", 2));
        caught(&[log(0, None, events)], &ops, &end, false, "duplicate");
        let mut events = complete();
        events.swap(0, 1);
        caught(&[log(0, None, events)], &ops, &end, false, "out of order");
    }

    #[test]
    fn a_value_never_written_or_at_another_version_is_caught() {
        let (ops, end) = history();
        let mut events = complete();
        events[1] = seen("r/b", "9", 2);
        caught(&[log(0, None, events)], &ops, &end, false, "never written");
        let mut events = complete();
        events[1] = seen("r/b", "2", 3);
        caught(
            &[log(0, None, events)],
            &ops,
            &end,
            true,
            "acknowledged at version 2",
        );
    }

    #[test]
    fn a_silent_watcher_is_caught_and_one_that_ended_is_not() {
        let (ops, end) = history();
        let mut events = complete();
        events.pop();
        caught(
            &[log(0, None, events.clone())],
            &ops,
            &end,
            true,
            "neither delivered",
        );
        let mut ended = log(0, None, events);
        ended.ended = Some("unavailable".into());
        assert_eq!(check(&[ended], &ops, &end, true), Vec::<String>::new());
    }

    #[test]
    fn a_stale_final_state_is_caught_even_where_events_coalesce() {
        let (ops, end) = history();
        let events = vec![
            seen("r/a", "1", 1),
            seen("r/b", "2", 2),
            seen(SENTINEL, "end", 5),
        ];
        caught(&[log(0, None, events)], &ops, &end, true, "final state");
    }

    #[test]
    fn watchers_that_disagree_are_caught() {
        let (mut ops, end) = history();
        // An unknown write both could have seen: one delivers it, the other does not.
        ops.push(Op {
            client: 2,
            key: "r/c".into(),
            call: Call::Put("7".into()),
            outcome: Outcome::Unknown("timeout".into()),
            start: 40,
            end: 50,
        });
        let mut with = complete();
        with.insert(4, seen("r/c", "7", 4));
        with[4].version = 4;
        let a = log(0, Some(0), complete());
        let mut b = log(1, Some(0), with);
        b.segments[0]
            .events
            .retain(|e| e.key != "r/a" || e.version != 4);
        caught(&[a, b], &ops, &end, false, "disagree");
    }

    #[test]
    fn a_transaction_split_by_another_event_is_caught() {
        let (mut ops, mut end) = history();
        // A transaction: r/c = 5 and r/d = 6 at version 6, then the sentinel at 7.
        ops.push(put(2, "r/c", "5", 6, 40, 45));
        ops.push(put(2, "r/d", "6", 6, 40, 45));
        end.sentinel = Some(7);
        end.state.insert("r/c".into(), Some(("5".into(), 6)));
        end.state.insert("r/d".into(), Some(("6".into(), 6)));
        let mut together = complete();
        together.pop();
        together.extend([
            seen("r/c", "5", 6),
            seen("r/d", "6", 6),
            seen(SENTINEL, "end", 7),
        ]);
        assert_eq!(
            check(&[log(0, None, together.clone())], &ops, &end, false),
            Vec::<String>::new()
        );
        let mut split = together;
        split.swap(3, 4);
        caught(&[log(0, None, split)], &ops, &end, false, "transaction");
    }
}
