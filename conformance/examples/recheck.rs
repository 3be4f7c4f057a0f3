//! Checks a saved robustness history again (per-key linearizability):
//! `cargo run -p coordkv-conformance --example recheck -- target/robustness/<backend>-<seed>`.

use std::collections::BTreeMap;

use conformance::robustness::history::Op;
use conformance::robustness::linearizable;

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
    println!("{} operations on {} keys", ops.len(), by_key.len());
    for (key, ops) in by_key {
        match linearizable::check_key(key, ops) {
            Ok(()) => println!("{key}: linearizable"),
            Err(v) => println!(
                "{key}: NOT linearizable; stuck at {}",
                v.stuck.as_ref().map_or("?".into(), Op::describe)
            ),
        }
    }
}
