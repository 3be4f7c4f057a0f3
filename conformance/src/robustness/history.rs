//! What every client saw: one record per operation, with when it was invoked and when it
//! returned, as JSON lines (`history.jsonl` of a failed run).

use std::fmt::Write as _;

/// One operation on one key, as a client invoked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `get(key)`.
    Get,
    /// `list(prefix)`, as it answered for this key (every key of the list is one such
    /// operation, with the list's times).
    List,
    /// `put(key, value)`.
    Put(String),
    /// `atomic_put(key, value, expected)`: `None` for "must not exist", else the version.
    Cas(Option<u64>, String),
    /// `delete(key)`.
    Delete,
}

/// What the client was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A get's answer: the value and its version, or nothing.
    Read(Option<(String, u64)>),
    /// A put or CAS applied at this version.
    Written(u64),
    /// A CAS refused (`Conflict`): its condition did not hold, nothing was written.
    Refused,
    /// A delete's answer: whether the key existed.
    Deleted(bool),
    /// An error that says nothing was applied (`Unavailable`, ...): the checker holds the
    /// library to it (the operation must have had no effect).
    Failed(String),
    /// An unknown outcome (`Timeout`, `OutcomeUnknown`, an untyped error): it may have been
    /// applied, at any time after it was invoked.
    Unknown(String),
}

/// One operation: who, on what, what it was told, and when (ns since the run began).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client (a store handle) that made it.
    pub client: usize,
    /// The key.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// What was answered.
    pub outcome: Outcome,
    /// Invoked at.
    pub start: u64,
    /// Returned at.
    pub end: u64,
}

impl Op {
    /// The record as one JSON line: `{process, type: ok|fail|info, f, key, value, version,
    /// expected, error_kind, t_start_ns, t_end_ns}`.
    pub fn json(&self) -> String {
        let (f, value, expected) = match &self.call {
            Call::Get => ("get", None, None),
            Call::List => ("list", None, None),
            Call::Put(v) => ("put", Some(v.as_str()), None),
            Call::Cas(e, v) => ("cas", Some(v.as_str()), Some(*e)),
            Call::Delete => ("delete", None, None),
        };
        let (kind, result) = match &self.outcome {
            Outcome::Read(Some((v, version))) => {
                ("ok", format!(r#""read":{},"version":{version}"#, quoted(v)))
            }
            Outcome::Read(None) => ("ok", r#""read":null"#.to_owned()),
            Outcome::Written(version) => ("ok", format!(r#""version":{version}"#)),
            Outcome::Refused => ("ok", r#""refused":true"#.to_owned()),
            Outcome::Deleted(existed) => ("ok", format!(r#""existed":{existed}"#)),
            Outcome::Failed(e) => ("fail", format!(r#""error_kind":{}"#, quoted(e))),
            Outcome::Unknown(e) => ("info", format!(r#""error_kind":{}"#, quoted(e))),
        };
        let mut line = format!(
            r#"{{"process":{},"type":"{kind}","f":"{f}","key":{}"#,
            self.client,
            quoted(&self.key)
        );
        if let Some(value) = value {
            let _ = write!(line, r#","value":{}"#, quoted(value));
        }
        match expected {
            Some(Some(version)) => {
                let _ = write!(line, r#","expected":{version}"#);
            }
            Some(None) => line.push_str(r#","expected":"absent""#),
            None => {}
        }
        let _ = write!(
            line,
            r#",{result},"t_start_ns":{},"t_end_ns":{}}}"#,
            self.start, self.end
        );
        line
    }

    /// Reads back a line of [`Op::json`] (a saved `history.jsonl`), to check it again.
    pub fn parse(line: &str) -> Option<Op> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let text = |name: &str| v.get(name).and_then(|x| x.as_str()).map(str::to_owned);
        let number = |name: &str| v.get(name).and_then(serde_json::Value::as_u64);
        let call = match v.get("f")?.as_str()? {
            "get" => Call::Get,
            "list" => Call::List,
            "put" => Call::Put(text("value")?),
            "cas" => Call::Cas(number("expected"), text("value")?),
            "delete" => Call::Delete,
            _ => return None,
        };
        let outcome = match (v.get("type")?.as_str()?, &call) {
            ("fail", _) => Outcome::Failed(text("error_kind").unwrap_or_default()),
            ("info", _) => Outcome::Unknown(text("error_kind").unwrap_or_default()),
            (_, Call::Get | Call::List) => Outcome::Read(text("read").zip(number("version"))),
            (_, Call::Delete) => Outcome::Deleted(v.get("existed")?.as_bool()?),
            _ if v.get("refused").is_some() => Outcome::Refused,
            _ => Outcome::Written(number("version")?),
        };
        Some(Op {
            client: usize::try_from(number("process")?).ok()?,
            key: text("key")?,
            call,
            outcome,
            start: number("t_start_ns")?,
            end: number("t_end_ns")?,
        })
    }

    /// One line for a person: `c2 put k0 c2-15 -> version 7058 [3387.6 .. 3414.4 ms]`.
    pub fn describe(&self) -> String {
        let call = match &self.call {
            Call::Get => "get".to_owned(),
            Call::List => "list".to_owned(),
            Call::Put(v) => format!("put {v}"),
            Call::Cas(None, v) => format!("cas {v} absent"),
            Call::Cas(Some(e), v) => format!("cas {v} if version {e}"),
            Call::Delete => "del".to_owned(),
        };
        let answer = match &self.outcome {
            Outcome::Read(Some((v, version))) => format!("{v} @ {version}"),
            Outcome::Read(None) => "not found".to_owned(),
            Outcome::Written(version) => format!("version {version}"),
            Outcome::Refused => "refused (conflict)".to_owned(),
            Outcome::Deleted(true) => "deleted".to_owned(),
            Outcome::Deleted(false) => "was absent".to_owned(),
            Outcome::Failed(e) => format!("failed: {e}"),
            Outcome::Unknown(e) => format!("unknown: {e}"),
        };
        let ms = |ns: u64| ns as f64 / 1e6;
        format!(
            "c{} {call:<28} {} -> {answer:<24} [{:.1} .. {:.1} ms]",
            self.client,
            self.key,
            ms(self.start),
            ms(self.end)
        )
    }
}

/// A JSON string literal.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
