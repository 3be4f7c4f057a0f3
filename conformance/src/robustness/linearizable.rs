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
//! - A write with an unknown outcome whose value a read returned (or a watcher received) took
//!   effect before that read returned: its return is moved there. One whose value nobody saw
//!   is first left out
//!   (as if never applied, as etcd's robustness suite does): each such write can otherwise take
//!   effect at any later point, and a few dozen of them under a long fault made the search
//!   exponential. Leaving them out can only make a history harder to explain, so a history
//!   that passes without them passes; one that fails without them is checked again with them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::history::{Call, Op, Outcome};

/// The register's state: absent, or a value with its version (`None`: not known yet).
type Reg = Option<(Arc<str>, Option<u64>)>;

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
    /// The search gave up (more than [`STATES`] states explored) without finding an order:
    /// not proven wrong, not proven right either.
    pub inconclusive: bool,
}

/// How many distinct (placed operations, register states) the search may explore for one key
/// before it gives up: a history with many unknown outcomes can make the search exponential
/// (each may take effect at any later point), and a checker that runs for hours, or out of
/// memory, helps no one. Each costs 32 bytes of memo.
pub const STATES: usize = 8_000_000;

/// Checks one key's operations (any order); `Err` with the evidence if no order explains them
/// (or, `inconclusive`, if the search gave up after [`STATES`] states).
pub fn check_key<'a>(
    key: &str,
    ops: impl IntoIterator<Item = &'a Op>,
) -> Result<(), Box<Violation>> {
    check_key_within(key, ops, &HashMap::new(), STATES)
}

/// [`check_key`] knowing when watchers first received some of the key's values (value → ns
/// since the run began): a write with an unknown outcome took effect before then.
pub fn check_key_watched<'a>(
    key: &str,
    ops: impl IntoIterator<Item = &'a Op>,
    watched: &HashMap<&str, u64>,
) -> Result<(), Box<Violation>> {
    check_key_within(key, ops, watched, STATES)
}

/// [`check_key_watched`] with another budget of states.
pub fn check_key_within<'a>(
    key: &str,
    ops: impl IntoIterator<Item = &'a Op>,
    watched: &HashMap<&str, u64>,
    budget: usize,
) -> Result<(), Box<Violation>> {
    // Left out: operations that failed saying nothing was applied (if one did apply, a read of
    // its value has no write to explain it), and reads whose answer never came (they constrain
    // nothing, and each would be one more operation to place anywhere after its call).
    let mut ops: Vec<Op> = ops
        .into_iter()
        .filter(|op| {
            !matches!(
                (&op.call, &op.outcome),
                (_, Outcome::Failed(_)) | (Call::Get | Call::List, Outcome::Unknown(_))
            )
        })
        .cloned()
        .collect();
    ops.sort_by_key(|op| op.start);
    // The earliest return of a read of each value, or its earliest delivery to a watcher.
    let mut seen: HashMap<&str, u64> = watched.clone();
    for op in &ops {
        if let (Call::Get | Call::List, Outcome::Read(Some((value, _)))) = (&op.call, &op.outcome) {
            let at = seen.entry(value.as_str()).or_insert(op.end);
            *at = (*at).min(op.end);
        }
    }
    let mut unseen = Vec::new();
    let mut bounded: Vec<u64> = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let written = match &op.call {
            Call::Put(value) | Call::Cas(_, value) => Some(value.as_str()),
            _ => None,
        };
        bounded.push(match (&op.outcome, written.map(|v| seen.get(v))) {
            (Outcome::Unknown(_), Some(Some(&read))) if read > op.start => read,
            (Outcome::Unknown(_), Some(None)) => {
                unseen.push(index);
                u64::MAX
            }
            (Outcome::Unknown(_), _) => u64::MAX,
            _ => op.end,
        });
    }
    drop(seen);
    for (op, end) in ops.iter_mut().zip(bounded) {
        op.end = end;
    }
    if !unseen.is_empty() {
        let skipped: HashSet<usize> = unseen.into_iter().collect();
        let fewer: Vec<Op> = (0..ops.len())
            .filter(|i| !skipped.contains(i))
            .map(|i| ops[i].clone())
            .collect();
        if Search::new(&fewer).run(budget).is_ok() {
            return Ok(());
        }
    }
    let (placed, stuck, inconclusive) = match Search::new(&ops).run(budget) {
        Ok(()) => return Ok(()),
        Err(deepest) => deepest,
    };
    Err(Box::new(Violation {
        key: key.to_owned(),
        stuck: stuck.map(|i| ops[i].clone()),
        ops,
        placed,
        inconclusive,
    }))
}

/// The states `op` may lead to from `state`, given what it answered (none: it cannot be next);
/// `written` is the value it writes, shared (states are cloned at every step of the search).
fn step(state: &Reg, op: &Op, written: Option<&Arc<str>>) -> Vec<Reg> {
    let value = || written.cloned().unwrap_or_else(|| Arc::from(""));
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
        (Call::Get | Call::List, Outcome::Read(read)) => match (state, read) {
            (None, None) => vec![None],
            (Some((value, version)), Some((seen, at)))
                if **value == **seen && version.is_none_or(|v| v == *at) =>
            {
                vec![Some((value.clone(), Some(*at)))]
            }
            _ => vec![],
        },
        (Call::Put(_), Outcome::Written(at)) => vec![Some((value(), Some(*at)))],
        (Call::Put(_), Outcome::Unknown(_)) => vec![state.clone(), Some((value(), None))],
        (Call::Cas(expected, _), Outcome::Written(at)) => match holds(expected) {
            Some(false) => vec![],
            _ => vec![Some((value(), Some(*at)))],
        },
        (Call::Cas(expected, _), Outcome::Refused) => match holds(expected) {
            Some(true) => vec![],
            _ => vec![state.clone()],
        },
        (Call::Cas(expected, _), Outcome::Unknown(_)) => match holds(expected) {
            Some(false) => vec![state.clone()],
            _ => vec![state.clone(), Some((value(), None))],
        },
        (Call::Delete, Outcome::Deleted(existed)) if *existed == state.is_some() => vec![None],
        (Call::Delete, Outcome::Unknown(_)) => vec![state.clone(), None],
        // Reads with unknown outcomes tell nothing; any other pairing cannot happen.
        (Call::Get | Call::List, Outcome::Unknown(_)) => vec![state.clone()],
        _ => vec![],
    }
}

/// The search over one key's operations: a doubly linked list of call and return events in
/// time order; calls are linearized (lifted out with their return) depth first, and a return
/// met before its call was placed means backtracking.
struct Search<'a> {
    ops: &'a [Op],
    /// Each operation's written value, shared.
    written: Vec<Option<Arc<str>>>,
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
        let written = ops
            .iter()
            .map(|op| match &op.call {
                Call::Put(value) | Call::Cas(_, value) => Some(Arc::from(value.as_str())),
                _ => None,
            })
            .collect();
        Search {
            ops,
            written,
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

    /// `Ok` if some order explains every operation; else how many the deepest attempt placed,
    /// the operation it could not place, and whether the search gave up ([`STATES`]).
    fn run(mut self, budget: usize) -> Result<(), (usize, Option<usize>, bool)> {
        // The set of placed operations, as a 128-bit Zobrist hash (the XOR of a random number
        // per operation): updated in O(1) per step where a bitset copy was O(n), which made
        // 100,000-operation keys quadratic; a collision (odds ~2^-128 per pair) could only
        // prune a branch the search would have tried.
        let mut rng = fastrand::Rng::with_seed(0x6c69_6e65_6172);
        let zobrist: Vec<u128> = (0..self.ops.len()).map(|_| rng.u128(..)).collect();
        let mut placed: u128 = 0;
        let mut state: BTreeSet<Reg> = BTreeSet::from([None]);
        // Memo of (placed operations, state set), the state set as a 128-bit fingerprint (a
        // set of owned values per entry took gigabytes on histories with many unknowns).
        let fingerprint = |states: &BTreeSet<Reg>| -> u128 {
            use std::hash::{Hash, Hasher};
            let mut low = std::hash::DefaultHasher::new();
            states.hash(&mut low);
            let mut high = std::hash::DefaultHasher::new();
            0x5bd1_e995_u64.hash(&mut high);
            states.hash(&mut high);
            (u128::from(high.finish()) << 64) | u128::from(low.finish())
        };
        let mut seen: HashSet<(u128, u128)> = HashSet::new();
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
                let after: BTreeSet<Reg> = state
                    .iter()
                    .flat_map(|s| step(s, &self.ops[op], self.written[op].as_ref()))
                    .collect();
                if !after.is_empty() {
                    let with = placed ^ zobrist[op];
                    if seen.len() >= budget {
                        return Err((deepest.0, deepest.1, true));
                    }
                    if seen.insert((with, fingerprint(&after))) {
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
                    return Err((deepest.0, deepest.1, false));
                };
                state = before;
                placed ^= zobrist[call / 2];
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

    #[test]
    fn a_search_past_its_budget_gives_up_and_says_so() {
        // 16 puts whose answers never came, all concurrent, then a read of a value nobody
        // wrote: every subset and order of the puts is tried before the read is refused.
        let mut ops: Vec<Op> = (0..16)
            .map(|i| {
                op(
                    i,
                    Call::Put(format!("v{i}")),
                    Outcome::Unknown("timeout".into()),
                    i as u64,
                    1_000,
                )
            })
            .collect();
        ops.push(op(
            99,
            Call::Get,
            Outcome::Read(Some(("x".into(), 1))),
            2_000,
            2_100,
        ));
        let gave_up = check_key_within("k", &ops, &HashMap::new(), 1_000).unwrap_err();
        assert!(gave_up.inconclusive, "over its budget the search gives up");
        let refuted = check_key("k", &ops).unwrap_err();
        assert!(!refuted.inconclusive, "within the budget it refutes");
    }

    #[test]
    fn unknown_writes_are_bounded_by_who_saw_them_and_unseen_ones_left_out_first() {
        // 20 concurrent puts whose answers never came (found in a real etcd run: 54 on one
        // key made the search give up), then a delete that found the key and a read of
        // nothing. Only v7 was seen, by a watcher at 50.
        let mut ops: Vec<Op> = (0..20)
            .map(|i| {
                let put = Call::Put(format!("v{i}"));
                op(i, put, Outcome::Unknown("timeout".into()), i as u64, 40)
            })
            .collect();
        ops.push(op(98, Call::Delete, Outcome::Deleted(true), 100, 110));
        ops.push(op(99, Call::Get, Outcome::Read(None), 120, 130));
        let watched = HashMap::from([("v7", 50)]);
        assert!(
            check_key_within("k", &ops, &watched, 200).is_ok(),
            "v7 took effect by 50 and the others are left out: a few states"
        );
        assert!(
            check_key("k", &ops).is_ok(),
            "with none seen, leaving them all out cannot explain the delete: placing them does"
        );
        // A read returning v3 bounds it the same way (v3 must be placed before it returns).
        ops.push(op(
            97,
            Call::Get,
            Outcome::Read(Some(("v3".into(), 9))),
            60,
            70,
        ));
        ops.retain(|o| o.client != 98 && o.client != 99);
        ops.push(op(98, Call::Delete, Outcome::Deleted(true), 100, 110));
        assert!(check_key_within("k", &ops, &HashMap::new(), 200).is_ok());
        // A watcher's delivery before the write was invoked is no bound: still a violation.
        let early = HashMap::from([("v19", 5)]);
        let mut stale = vec![op(
            0,
            Call::Put("v19".into()),
            Outcome::Unknown("t".into()),
            10,
            20,
        )];
        stale.push(op(
            1,
            Call::Get,
            Outcome::Read(Some(("v19".into(), 3))),
            0,
            8,
        ));
        assert!(check_key_within("k", &stale, &early, 200).is_err());
    }

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

    /// A linearizable history by construction: op i takes effect at 100 * i on a real
    /// register, its call and return up to 60 either side (so neighbours overlap).
    fn simulated(seed: u64, n: usize) -> Vec<Op> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut state: Option<(String, u64)> = None;
        let mut version = 0;
        (0..n)
            .map(|i| {
                let at = 1_000 + 100 * i as u64;
                let (start, end) = (at - rng.u64(0..60), at + rng.u64(0..60));
                let value = format!("v{i}");
                let (call, outcome) = match rng.u8(0..4) {
                    0 => (Call::Get, Outcome::Read(state.clone())),
                    1 => {
                        version += 1;
                        state = Some((value.clone(), version));
                        (Call::Put(value), Outcome::Written(version))
                    }
                    2 => {
                        let expected = if rng.bool() {
                            state.as_ref().map(|s| s.1)
                        } else {
                            Some(version + 5)
                        };
                        if expected == state.as_ref().map(|s| s.1) {
                            version += 1;
                            state = Some((value.clone(), version));
                            (Call::Cas(expected, value), Outcome::Written(version))
                        } else {
                            (Call::Cas(expected, value), Outcome::Refused)
                        }
                    }
                    _ => {
                        let existed = state.take().is_some();
                        (Call::Delete, Outcome::Deleted(existed))
                    }
                };
                op(i % 5, call, outcome, start, end)
            })
            .collect()
    }

    fn is_write(op: &Op) -> bool {
        matches!(op.outcome, Outcome::Written(_) | Outcome::Deleted(_))
    }

    #[test]
    fn mutated_histories_are_caught_and_weakened_ones_pass() {
        let (mut stale, mut flipped) = (0, 0);
        for seed in 0..40 {
            let history = simulated(seed, 300);
            assert!(
                check_key("k", &history).is_ok(),
                "seed {seed}: the original"
            );

            // An acknowledged write turned into an unknown one: still explainable.
            let mut weakened = history.clone();
            for op in weakened.iter_mut().filter(|o| is_write(o)).step_by(3) {
                op.outcome = Outcome::Unknown("timeout".into());
            }
            assert!(check_key("k", &weakened).is_ok(), "seed {seed}: weakened");

            // A stale read: a get answers the value of a put that two later writes (both
            // ended before the get began) replaced.
            let puts: Vec<usize> = (0..history.len())
                .filter(|&i| matches!(history[i].outcome, Outcome::Written(_)))
                .collect();
            for window in puts.windows(3) {
                let (first, third) = (window[0], window[2]);
                let Some(get) = (third + 1..history.len()).find(|&j| {
                    history[j].call == Call::Get && history[j].start > history[third].end + 1
                }) else {
                    continue;
                };
                let (Call::Put(v) | Call::Cas(_, v)) = &history[first].call else {
                    continue;
                };
                let Outcome::Written(at) = history[first].outcome else {
                    continue;
                };
                let mut mutated = history.clone();
                mutated[get].outcome = Outcome::Read(Some((v.clone(), at)));
                assert!(check_key("k", &mutated).is_err(), "seed {seed}: stale read");
                stale += 1;
                break;
            }

            // A refused CAS reported applied, with a later read (before any other write could
            // have landed) that does not see it.
            for c in 0..history.len() {
                if history[c].outcome != Outcome::Refused {
                    continue;
                }
                let Some(g) = (c + 1..history.len()).find(|&j| history[j].call == Call::Get) else {
                    continue;
                };
                let quiet = history.iter().enumerate().all(|(i, o)| {
                    i == c || !is_write(o) || o.end < history[c].start || o.start > history[g].end
                });
                if !quiet || history[g].start <= history[c].end {
                    continue;
                }
                let mut mutated = history.clone();
                mutated[c].outcome = Outcome::Written(1_000_000);
                assert!(
                    check_key("k", &mutated).is_err(),
                    "seed {seed}: flipped CAS"
                );
                flipped += 1;
                break;
            }
        }
        assert!(
            stale >= 20 && flipped >= 5,
            "too few mutations tried: {stale}, {flipped}"
        );
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
