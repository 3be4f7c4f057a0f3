//! `kvctl txn`: a transaction read from stdin, one condition or operation per line.

use std::io::Read;

use kv::{Condition, Store, Txn, TxnOpResult};
use serde_json::json;

use crate::output::{Failure, Printer, code};

/// The lines `txn` reads, for its help and its errors.
pub const SYNTAX: &str = "one per line: `if KEY missing`, `if KEY exists`, `if KEY version N`, \
     `if KEY value TEXT`, `put KEY TEXT`, `del KEY` (blank lines and `#` comments are skipped)";

/// Parses the transaction text, with the keys of its operations in order (to print their
/// results); a bad line is a usage error naming its number.
pub fn parse(text: &str) -> Result<(Txn, Vec<&str>), Failure> {
    let mut txn = Txn::new();
    let mut written = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let bad = |what: &str| {
            Failure::new(
                code::USAGE,
                format!("line {}: {what}; expected {SYNTAX}", index + 1),
            )
        };
        let (verb, rest) = split(trimmed);
        let (key, rest) = split(rest);
        if key.is_empty() {
            return Err(bad(&format!("`{verb}` needs a key")));
        }
        txn = match verb {
            "put" => {
                written.push(key);
                txn.put(key, rest.to_owned())
            }
            "del" | "delete" if rest.is_empty() => {
                written.push(key);
                txn.delete(key)
            }
            "if" => {
                let (kind, argument) = split(rest);
                let condition = match (kind, argument) {
                    ("missing", "") => Condition::Missing,
                    ("exists", "") => Condition::Exists,
                    ("version", number) => Condition::Version(
                        number
                            .trim()
                            .parse()
                            .map_err(|_| bad("`version` needs a number"))?,
                    ),
                    ("value", text) => Condition::Value(text.to_owned().into()),
                    _ => return Err(bad(&format!("unknown condition `{rest}`"))),
                };
                txn.when(key, condition)
            }
            _ => return Err(bad(&format!("cannot read `{line}`"))),
        };
    }
    Ok((txn, written))
}

/// The first word and the rest after one space (the rest keeps further spaces: values may
/// hold them).
fn split(text: &str) -> (&str, &str) {
    match text.split_once(' ') {
        Some((word, rest)) => (word, rest),
        None => (text, ""),
    }
}

/// Reads the transaction from stdin, runs it and prints what each operation did. A condition
/// that fails is exit code 1 (as `cas`), nothing changed.
pub async fn run(store: &dyn Store, out: &Printer) -> Result<u8, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::new(code::USAGE, format!("cannot read stdin as text: {e}")))?;
    let (txn, keys) = parse(&text)?;
    let results = store.txn(txn).await.map_err(Failure::write)?;
    for (key, result) in keys.iter().zip(results) {
        match result {
            TxnOpResult::Put { version } => out
                .emit(json!({"op": "put", "key": key, "version": version}), || {
                    format!("put {key} version {version}")
                }),
            TxnOpResult::Delete { existed } => out.emit(
                json!({"op": "del", "key": key, "existed": existed}),
                || match existed {
                    true => format!("del {key}"),
                    false => format!("del {key} (not found)"),
                },
            ),
        }
    }
    if !out.json() {
        eprintln!("OK");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_make_a_transaction() {
        let (txn, written) = parse(
            "# move a job\nif jobs/1 value queued now\nif jobs/1/owner missing\n\n\
             put jobs/1 running on  w7\nput jobs/1/owner w7\ndel queue/1\n",
        )
        .unwrap();
        assert_eq!(written, ["jobs/1", "jobs/1/owner", "queue/1"]);
        let expected = Txn::new()
            .when("jobs/1", Condition::Value("queued now".into()))
            .when("jobs/1/owner", Condition::Missing)
            .put("jobs/1", "running on  w7")
            .put("jobs/1/owner", "w7")
            .delete("queue/1");
        assert_eq!(txn, expected);
        assert_eq!(
            parse("if a version 7\nput b\n").unwrap().0,
            Txn::new().when("a", Condition::Version(7)).put("b", "")
        );
    }

    #[test]
    fn bad_lines_name_their_number() {
        for (text, line) in [
            ("put a 1\nif a versions 3\n", "line 2"),
            ("if a version x\n", "line 1"),
            ("del a extra\n", "line 1"),
            ("\n\nget a\n", "line 3"),
            ("put\n", "line 1"),
        ] {
            let failure = parse(text).unwrap_err();
            assert_eq!(failure.code, code::USAGE);
            assert!(
                failure.message.starts_with(line),
                "{text:?}: {}",
                failure.message
            );
        }
    }
}
