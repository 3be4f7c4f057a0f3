//! Checks a saved robustness history again (per-key linearizability, with the watchers'
//! deliveries of `watches.jsonl` when it is there, as the run did; and lists as snapshots
//! across keys, which holds only where the backend declares `snapshot_lists`):
//! `cargo run -p coordkv-conformance --example recheck -- target/robustness/<backend>-<seed>`.

use std::collections::{BTreeMap, HashMap};

use conformance::robustness::history::Op;
use conformance::robustness::{linearizable, list};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: recheck DIR (with history.jsonl)");
    let text = std::fs::read_to_string(format!("{dir}/history.jsonl")).expect("history.jsonl");
    let ops: Vec<Op> = text.lines().filter_map(Op::parse).collect();
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    // (key, value) -> when a watcher first received it.
    let watches = std::fs::read_to_string(format!("{dir}/watches.jsonl")).unwrap_or_default();
    let mut watched: HashMap<String, HashMap<String, u64>> = HashMap::new();
    for line in watches.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let text = |name: &str| event.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        if let (Some(at), Some("put"), Some(key), Some(value)) = (
            event.get("at_ns").and_then(|v| v.as_u64()),
            text("kind").as_deref(),
            text("key"),
            text("value"),
        ) {
            let first = watched.entry(key).or_default().entry(value).or_insert(at);
            *first = (*first).min(at);
        }
    }
    println!("{} operations on {} keys", ops.len(), by_key.len());
    for (key, ops) in by_key {
        let seen: HashMap<&str, u64> = watched
            .get(key)
            .map(|m| m.iter().map(|(v, at)| (v.as_str(), *at)).collect())
            .unwrap_or_default();
        match linearizable::check_key_watched(key, ops, &seen) {
            Ok(()) => println!("{key}: linearizable"),
            Err(v) => println!(
                "{key}: {} after placing {} of {}; stuck at {}",
                match v.inconclusive {
                    true => "INCONCLUSIVE (the search gave up)",
                    false => "NOT linearizable",
                },
                v.placed,
                v.ops.len(),
                v.stuck.as_ref().map_or("?".into(), Op::describe)
            ),
        }
    }
    for problem in list::check(&ops) {
        println!("{problem}");
    }
}
