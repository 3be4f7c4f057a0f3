//! Per-key linearizability of get/put/CAS/delete histories: the Wing–Gong search with Lowe's
//! memoization (as porcupine does), over a register model that knows what kv's answers mean.
//!
//! - A key is absent or holds a value at a version; values are unique per write, so a read
//!   names the write it saw.
//! - An operation with an unknown outcome may take effect at any time after it was invoked, or
//!   never: its return is at infinity and the model lets it apply or not (a set of states).
//! - An operation that failed with an error saying nothing was applied is left out: if it did
//!   take effect, a read of its value has no write to explain it, and the history fails.
//! - A written version is pinned by the answer; a write with an unknown outcome leaves its
//!   version open until a read pins it.

use std::collections::{BTreeSet, HashSet};

use super::history::{Call, Op, Outcome};

/// The register's state: absent, or a value with its version (`None`: not known yet).
type Reg = Option<(String, Option<u64>)>;

/// Why a key's history is not linearizable: the operations of the key, and the ones that
/// could not be placed.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// Its operations, by invocation time (those the check used).
    pub ops: Vec<Op>,
    /// How many operations the longest explainable prefix placed.
    pub placed: usize,
    /// The operation that no order could place after that prefix (the earliest to return
    /// among those left).
    pub stuck: Option<Op>,
}

/// Checks one key's operations (any order); `Err` with the evidence if no order explains them.
pub fn check_key(key: &str, ops: &[Op]) -> Result<(), Box<Violation>> {
    let mut ops: Vec<Op> = ops
        .iter()
        .filter(|op| !matches!(op.outcome, Outcome::Failed(_)))
        .cloned()
        .collect();
    ops.sort_by_key(|op| op.start);
    for op in &mut ops {
        if matches!(op.outcome, Outcome::Unknown(_)) {
            op.end = u64::MAX;
        }
    }
    let search = Search::new(&ops);
    search.run().map_err(|(placed, stuck)| {
        Box::new(Violation {
            key: key.to_owned(),
            stuck: stuck.map(|i| ops[i].clone()),
            ops: ops.clone(),
            placed,
        })
    })
}

/// The states `op` may lead to from `state`, given what it answered (none: it cannot be next).
fn step(state: &Reg, op: &Op) -> Vec<Reg> {
    let holds = |expected: &Option<u64>| -> Option<bool> {
        match (expected, state) {
            (None, None) => Some(true),
            (None, Some(_)) => Some(false),
            (Some(_), None) => Some(false),
            (Some(e), Some((_, Some(v)))) => Some(e == v),
            // The version of a write with an unknown outcome: either way.
            (Some(_), Some((_, None))) => None,
        }
    };
    match (&op.call, &op.outcome) {
        (Call::Get, Outcome::Read(read)) => match (state, read) {
            (None, None) => vec![None],
            (Some((value, version)), Some((seen, at)))
                if value == seen && version.is_none_or(|v| v == *at) =>
            {
                vec![Some((value.clone(), Some(*at)))]
            }
            _ => vec![],
        },
        (Call::Put(value), Outcome::Written(at)) => vec![Some((value.clone(), Some(*at)))],
        (Call::Put(value), Outcome::Unknown(_)) => vec![state.clone(), Some((value.clone(), None))],
        (Call::Cas(expected, value), Outcome::Written(at)) => match holds(expected) {
            Some(false) => vec![],
            _ => vec![Some((value.clone(), Some(*at)))],
        },
        (Call::Cas(expected, _), Outcome::Refused) => match holds(expected) {
            Some(true) => vec![],
            _ => vec![state.clone()],
        },
        (Call::Cas(expected, value), Outcome::Unknown(_)) => match holds(expected) {
            Some(false) => vec![state.clone()],
            _ => vec![state.clone(), Some((value.clone(), None))],
        },
        (Call::Delete, Outcome::Deleted(existed)) if *existed == state.is_some() => vec![None],
        (Call::Delete, Outcome::Unknown(_)) => vec![state.clone(), None],
        // Reads with unknown outcomes tell nothing; any other pairing cannot happen.
        (Call::Get, Outcome::Unknown(_)) => vec![state.clone()],
        _ => vec![],
    }
}

/// The search over one key's operations: a doubly linked list of call and return events in
/// time order; calls are linearized (lifted out with their return) depth first, and a return
/// met before its call was placed means backtracking.
struct Search<'a> {
    ops: &'a [Op],
    /// Events: `2i` is op i's call, `2i + 1` its return; `order` is their time order.
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

const NIL: usize = usize::MAX;

impl<'a> Search<'a> {
    fn new(ops: &'a [Op]) -> Search<'a> {
        let events = ops.len() * 2;
        let mut order: Vec<usize> = (0..events).collect();
        // By time; at equal times calls before returns, so that touching operations count as
        // concurrent (the lenient reading).
        order.sort_by_key(|&e| {
            let op = &ops[e / 2];
            if e.is_multiple_of(2) {
                (op.start, 0)
            } else {
                (op.end, 1)
            }
        });
        let head = events;
        let mut next = vec![NIL; events + 1];
        let mut prev = vec![NIL; events + 1];
        let mut last = head;
        for &event in &order {
            next[last] = event;
            prev[event] = last;
            last = event;
        }
        Search {
            ops,
            next,
            prev,
            head,
        }
    }

    fn lift(&mut self, call: usize) {
        for event in [call, call + 1] {
            let (p, n) = (self.prev[event], self.next[event]);
            self.next[p] = n;
            if n != NIL {
                self.prev[n] = p;
            }
        }
    }

    fn unlift(&mut self, call: usize) {
        for event in [call + 1, call] {
            let (p, n) = (self.prev[event], self.next[event]);
            self.next[p] = event;
            if n != NIL {
                self.prev[n] = event;
            }
        }
    }

    /// `Ok` if some order explains every operation; else how many the deepest attempt placed
    /// and the operation it could not place.
    fn run(mut self) -> Result<(), (usize, Option<usize>)> {
        let words = self.ops.len().div_ceil(64);
        let mut placed = vec![0u64; words];
        let mut state: BTreeSet<Reg> = BTreeSet::from([None]);
        let mut seen: HashSet<(Vec<u64>, BTreeSet<Reg>)> = HashSet::new();
        let mut stack: Vec<(usize, BTreeSet<Reg>)> = Vec::new();
        let mut deepest = (0, None);
        let mut entry = self.next[self.head];
        while self.next[self.head] != NIL {
            if entry == NIL {
                // Only calls left after `entry`'s last return: cannot happen (every call has
                // its return after it), but never loop on it.
                break;
            }
            let op = entry / 2;
            if entry.is_multiple_of(2) {
                let after: BTreeSet<Reg> =
                    state.iter().flat_map(|s| step(s, &self.ops[op])).collect();
                if !after.is_empty() {
                    let mut with = placed.clone();
                    with[op / 64] |= 1 << (op % 64);
                    if seen.insert((with.clone(), after.clone())) {
                        stack.push((entry, std::mem::replace(&mut state, after)));
                        placed = with;
                        self.lift(entry);
                        entry = self.next[self.head];
                        continue;
                    }
                }
                entry = self.next[entry];
            } else {
                if stack.len() >= deepest.0 {
                    deepest = (stack.len(), Some(op));
                }
                let Some((call, before)) = stack.pop() else {
                    return Err(deepest);
                };
                state = before;
                let undone = call / 2;
                placed[undone / 64] &= !(1 << (undone % 64));
                self.unlift(call);
                entry = self.next[call];
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, call: Call, outcome: Outcome, start: u64, end: u64) -> Op {
        Op {
            client,
            key: "k".into(),
            call,
            outcome,
            start,
            end,
        }
    }
    fn put(v: &str, at: u64) -> (Call, Outcome) {
        (Call::Put(v.into()), Outcome::Written(at))
    }
    fn get(read: Option<(&str, u64)>) -> (Call, Outcome) {
        (Call::Get, Outcome::Read(read.map(|(v, at)| (v.into(), at))))
    }
    fn history(ops: &[((Call, Outcome), u64, u64)]) -> Vec<Op> {
        ops.iter()
            .enumerate()
            .map(|(i, ((call, outcome), start, end))| {
                op(i, call.clone(), outcome.clone(), *start, *end)
            })
            .collect()
    }
    fn ok(ops: &[((Call, Outcome), u64, u64)]) -> bool {
        check_key("k", &history(ops)).is_ok()
    }

    #[test]
    fn sequential_reads_see_the_last_write() {
        assert!(ok(&[
            (put("a", 1), 0, 10),
            (get(Some(("a", 1))), 20, 30),
            (put("b", 2), 40, 50),
            (get(Some(("b", 2))), 60, 70),
        ]));
    }

    #[test]
    fn a_stale_read_is_caught() {
        assert!(!ok(&[
            (put("a", 1), 0, 10),
            (put("b", 2), 20, 30),
            (get(Some(("a", 1))), 40, 50),
        ]));
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either() {
        for read in [Some(("a", 1)), Some(("b", 2))] {
            assert!(ok(&[
                (put("a", 1), 0, 10),
                (put("b", 2), 20, 40),
                (get(read), 25, 35),
            ]));
        }
    }

    #[test]
    fn a_read_of_a_write_before_it_was_invoked_is_caught() {
        assert!(!ok(&[(get(Some(("a", 1))), 0, 10), (put("a", 1), 20, 30)]));
    }

    #[test]
    fn a_lost_update_is_caught() {
        // Two CASes from version 1 both report success.
        assert!(!ok(&[
            (put("a", 1), 0, 10),
            (
                (Call::Cas(Some(1), "b".into()), Outcome::Written(2)),
                20,
                30
            ),
            (
                (Call::Cas(Some(1), "c".into()), Outcome::Written(3)),
                40,
                50
            ),
        ]));
    }

    #[test]
    fn a_failed_cas_reported_ok_is_caught() {
        // The CAS expected version 9 while the key was at 1, yet "succeeded".
        assert!(!ok(&[
            (put("a", 1), 0, 10),
            (
                (Call::Cas(Some(9), "b".into()), Outcome::Written(2)),
                20,
                30
            ),
        ]));
        // And a refusal where the condition held.
        assert!(!ok(&[
            (put("a", 1), 0, 10),
            ((Call::Cas(Some(1), "b".into()), Outcome::Refused), 20, 30),
        ]));
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never() {
        let unknown = (Call::Put("b".into()), Outcome::Unknown("timeout".into()));
        // Applied long after it returned.
        assert!(ok(&[
            (put("a", 1), 0, 10),
            (unknown.clone(), 20, 30),
            (get(Some(("a", 1))), 40, 50),
            (get(Some(("b", 7))), 60, 70),
        ]));
        // Never applied.
        assert!(ok(&[
            (put("a", 1), 0, 10),
            (unknown, 20, 30),
            (get(Some(("a", 1))), 40, 50),
        ]));
    }

    #[test]
    fn a_write_that_failed_saying_nothing_was_applied_must_not_be_seen() {
        let failed = (Call::Put("b".into()), Outcome::Failed("unavailable".into()));
        assert!(!ok(&[(failed, 0, 10), (get(Some(("b", 1))), 20, 30)]));
    }

    #[test]
    fn a_write_applied_twice_is_caught() {
        // The issue-26 ZooKeeper excerpt: a delete saw the put's value, a later get saw it
        // again.
        assert!(!ok(&[
            ((Call::Delete, Outcome::Deleted(true)), 3336, 3350),
            (get(None), 3383, 3401),
            (put("c2-151", 7058), 3387, 3414),
            ((Call::Delete, Outcome::Deleted(true)), 3390, 3404),
            (get(Some(("c2-151", 7058))), 3404, 3423),
        ]));
    }

    #[test]
    fn deletes_and_absent_cas() {
        assert!(ok(&[
            ((Call::Cas(None, "a".into()), Outcome::Written(1)), 0, 10),
            ((Call::Cas(None, "b".into()), Outcome::Refused), 20, 30),
            ((Call::Delete, Outcome::Deleted(true)), 40, 50),
            ((Call::Delete, Outcome::Deleted(false)), 60, 70),
            (get(None), 80, 90),
        ]));
        assert!(!ok(&[((Call::Delete, Outcome::Deleted(true)), 0, 10),]));
    }

    #[test]
    fn many_concurrent_clients_are_checked_quickly() {
        // 8 clients, 400 ops, each a put then a read of its own value in overlapping windows.
        let mut ops = Vec::new();
        for i in 0..200u64 {
            let client = (i % 8) as usize;
            let t = i * 10;
            let value = format!("v{i}");
            ops.push(op(
                client,
                Call::Put(value.clone()),
                Outcome::Written(i + 1),
                t,
                t + 35,
            ));
            ops.push(op(
                client,
                Call::Get,
                Outcome::Read(Some((value, i + 1))),
                t + 36,
                t + 38,
            ));
        }
        let started = std::time::Instant::now();
        assert!(check_key("k", &ops).is_ok());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
