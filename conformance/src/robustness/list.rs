//! Lists as snapshots across keys. Each list is checked per key by the linearizability checker
//! (it is one read of each key); where the backend declares
//! [`Capabilities::snapshot_lists`](kv_core::Capabilities::snapshot_lists), it must also be one
//! read of *all* its keys at one point in time. The check here is the part of that which needs
//! no search: a list that shows key `a`'s value from a write invoked after a write of key `b`
//! was acknowledged must show `b` at that write's version or later (or `b` deleted since). A
//! list read key by key, as ZooKeeper's tree walk is, fails it when a writer moves on between
//! two of its reads.

use std::collections::{BTreeMap, HashMap};

use super::history::{Call, Op, Outcome};

/// What each list that breaks the rule showed, and the write it missed.
pub fn check(ops: &[Op]) -> Vec<String> {
    // Each key's writes by value (values are unique per write), and its acknowledged writes
    // as (returned at, version), by return time.
    let mut written_by_value: HashMap<(&str, &str), &Op> = HashMap::new();
    let mut acknowledged: HashMap<&str, Vec<(u64, u64, &Op)>> = HashMap::new();
    let mut deletes: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in ops {
        match &op.call {
            Call::Put(value) | Call::Cas(_, value) => {
                written_by_value.insert((&op.key, value), op);
                if let Outcome::Written(version) = op.outcome {
                    acknowledged
                        .entry(&op.key)
                        .or_default()
                        .push((op.end, version, op));
                }
            }
            Call::Delete => deletes.entry(&op.key).or_default().push(op),
            Call::Get | Call::List => {}
        }
    }
    for writes in acknowledged.values_mut() {
        writes.sort_by_key(|(end, _, _)| *end);
    }
    // One list: every key it answered for, with the list's client and times.
    let mut lists: BTreeMap<(u64, u64, usize), Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.call == Call::List) {
        lists
            .entry((op.start, op.end, op.client))
            .or_default()
            .push(op);
    }
    let mut problems = Vec::new();
    for ((start, end, client), shown) in &lists {
        let reads: Vec<(&str, &Option<(String, u64)>)> = shown
            .iter()
            .filter_map(|o| match &o.outcome {
                Outcome::Read(read) => Some((o.key.as_str(), read)),
                _ => None,
            })
            .collect();
        for (a, read_a) in &reads {
            let Some((value_a, _)) = read_a else { continue };
            let Some(write_a) = written_by_value.get(&(*a, value_a.as_str())) else {
                continue;
            };
            for (b, read_b) in &reads {
                if a == b {
                    continue;
                }
                // The newest write of b acknowledged before a's write was invoked.
                let Some(&(_, version_b, write_b)) = acknowledged
                    .get(b)
                    .into_iter()
                    .flatten()
                    .filter(|(returned, _, _)| *returned < write_a.start)
                    .max_by_key(|(_, version, _)| *version)
                else {
                    continue;
                };
                let missed = match read_b {
                    Some((_, shown_b)) => *shown_b < version_b,
                    // Absent: only if no delete of b can fall between that write and the list.
                    None => !deletes
                        .get(b)
                        .into_iter()
                        .flatten()
                        .any(|d| may_fall_between(d, write_b, *end)),
                };
                if missed {
                    problems.push(format!(
                        "a list by client {client} [{:.1} .. {:.1} ms] is not one snapshot: it \
                         shows {a} = {value_a} (written by {}), but {b} as {} although {} had \
                         been acknowledged before that write began",
                        *start as f64 / 1e6,
                        *end as f64 / 1e6,
                        write_a.describe(),
                        read_b
                            .as_ref()
                            .map_or("absent".to_owned(), |(v, n)| format!("{v} @ {n}")),
                        write_b.describe()
                    ));
                }
            }
        }
    }
    problems
}

/// Whether `delete` can have taken effect after `write` and before `before`: one that
/// deleted something, within its call; one of unknown outcome, at any time after it began
/// (it may land long after its caller gave up). A delete that found nothing, or failed saying
/// nothing was applied, removed nothing.
fn may_fall_between(delete: &Op, write: &Op, before: u64) -> bool {
    delete.start < before
        && match delete.outcome {
            Outcome::Deleted(true) => delete.end > write.start,
            Outcome::Unknown(_) => true,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, key: &str, call: Call, outcome: Outcome, start: u64, end: u64) -> Op {
        Op {
            client,
            key: key.into(),
            call,
            outcome,
            start,
            end,
        }
    }

    fn listed(read_a: Option<(&str, u64)>, read_b: Option<(&str, u64)>) -> Vec<Op> {
        let read = |r: Option<(&str, u64)>| Outcome::Read(r.map(|(v, n)| (v.to_owned(), n)));
        vec![
            op(1, "b", Call::Put("b1".into()), Outcome::Written(10), 0, 5),
            op(1, "b", Call::Put("b2".into()), Outcome::Written(20), 6, 9),
            op(2, "a", Call::Put("a1".into()), Outcome::Written(30), 10, 15),
            op(3, "a", Call::List, read(read_a), 12, 20),
            op(3, "b", Call::List, read(read_b), 12, 20),
        ]
    }

    #[test]
    fn a_list_that_shows_a_later_write_but_misses_an_earlier_one_is_no_snapshot() {
        let problems = check(&listed(Some(("a1", 30)), Some(("b1", 10))));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("b as b1 @ 10"), "{problems:?}");
        let absent = check(&listed(Some(("a1", 30)), None));
        assert_eq!(absent.len(), 1, "b deleted by nobody: {absent:?}");
    }

    #[test]
    fn a_list_consistent_with_one_point_in_time_passes() {
        assert!(check(&listed(Some(("a1", 30)), Some(("b2", 20)))).is_empty());
        // Before a's write: b's older value is fine.
        assert!(check(&listed(None, Some(("b1", 10)))).is_empty());
        // b absent, with a delete that may fall between b's write and the list.
        let mut ops = listed(Some(("a1", 30)), None);
        ops.push(op(4, "b", Call::Delete, Outcome::Deleted(true), 11, 13));
        assert!(check(&ops).is_empty());
        // A delete whose caller timed out before b's write: it may land after it (found by a
        // Consul cluster run, where such a delete landed 600 ms after its timeout).
        let mut ops = listed(Some(("a1", 30)), None);
        ops.push(op(
            4,
            "b",
            Call::Delete,
            Outcome::Unknown("timed out".into()),
            1,
            2,
        ));
        assert!(check(&ops).is_empty(), "{:?}", check(&ops));
        // A delete that found nothing, or failed, explains nothing.
        for outcome in [
            Outcome::Deleted(false),
            Outcome::Failed("unavailable".into()),
        ] {
            let mut ops = listed(Some(("a1", 30)), None);
            ops.push(op(4, "b", Call::Delete, outcome, 11, 13));
            assert_eq!(check(&ops).len(), 1);
        }
    }
}
