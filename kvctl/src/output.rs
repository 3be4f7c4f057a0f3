//! Printing results as text or JSON lines, and errors with exit codes and hints.

use std::io::{IsTerminal, Write};

use base64::Engine;
use kv::{Child, Error, EventKind, KvPair, WatchEvent};
use serde_json::{Map, Value, json};

use crate::cli::Output;

/// Exit codes scripts can rely on.
pub mod code {
    /// Not found, or a precondition failed.
    pub const NOT_FOUND: i32 = 1;
    /// Bad usage or invalid input.
    pub const USAGE: i32 = 2;
    /// The store is unreachable, or authentication failed.
    pub const UNREACHABLE: i32 = 3;
    /// A lock was lost while the command ran.
    pub const LOCK_LOST: i32 = 4;
    /// Anything else.
    pub const OTHER: i32 = 5;
    /// `watch --since` asked for history the store no longer keeps.
    pub const COMPACTED: i32 = 6;
    /// A write whose answer never came: it may or may not have been applied.
    pub const OUTCOME_UNKNOWN: i32 = 7;
}

/// A failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The message.
    pub message: String,
    /// What to try, if anything useful can be said.
    pub hint: Option<&'static str>,
    /// The exit code.
    pub code: i32,
    /// A stable name for scripts reading `-o json` (`not_found`, `conflict`, `unavailable`...).
    pub kind: &'static str,
}

impl Failure {
    /// A failure with a message and code; its kind follows from the code.
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        let kind = match code {
            code::NOT_FOUND => "not_found",
            code::USAGE => "usage",
            code::UNREACHABLE => "unavailable",
            code::LOCK_LOST => "lock_lost",
            code::COMPACTED => "compacted",
            code::OUTCOME_UNKNOWN => "outcome_unknown",
            _ => "error",
        };
        Failure {
            message: message.into(),
            hint: None,
            code,
            kind,
        }
    }

    /// The failure of a write: one whose outcome is unknown (the request was sent, no answer
    /// came) gets its own exit code and says how to recover.
    pub fn write(error: Error) -> Failure {
        if !error.is_outcome_unknown() {
            return error.into();
        }
        Failure {
            message: format!("{error}; the write may or may not have been applied"),
            hint: Some(
                "re-read the key (`kvctl get KEY --version`) before retrying: a blind retry can apply a put twice or fail a CAS against its own success",
            ),
            code: code::OUTCOME_UNKNOWN,
            kind: "outcome_unknown",
        }
    }

    /// The same failure with another hint.
    pub fn hint(mut self, hint: &'static str) -> Failure {
        self.hint = Some(hint);
        self
    }

    /// Prints the failure on stderr and, with `-o json`, as one JSON object on stdout too
    /// (`{"error": ..., "kind": ..., "exit_code": ..., "hint": ...}`), so a script reading
    /// stdout line by line sees every outcome.
    pub fn print(&self, format: Output) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "kvctl: {}", self.message);
        if let Some(hint) = self.hint {
            let _ = writeln!(stderr, "hint: {hint}");
        }
        if format == Output::Json {
            let object = json!({
                "error": self.message,
                "kind": self.kind,
                "exit_code": self.code,
                "hint": self.hint,
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{object}");
            let _ = out.flush();
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let (code, kind, hint) = match &error {
            Error::InvalidKey { .. } => (
                code::USAGE,
                "invalid_key",
                Some(
                    "keys are /-separated segments; no empty, `.` or `..` segments, no control characters",
                ),
            ),
            Error::InvalidUrl { .. } => (
                code::USAGE,
                "invalid_url",
                Some("store URLs look like sled:///path, memory://, etcd://host:2379/root"),
            ),
            Error::InvalidArgument { .. } => (code::USAGE, "invalid_argument", None),
            Error::ValueTooLarge { .. } => (code::USAGE, "value_too_large", None),
            Error::Unsupported { .. } => (code::USAGE, "unsupported", None),
            Error::Conflict { .. } => (
                code::NOT_FOUND,
                "conflict",
                Some("read the current version with `kvctl get KEY --version` and retry"),
            ),
            Error::Unavailable { .. } => (
                code::UNREACHABLE,
                "unavailable",
                Some("check that the store is running and that --store / KV_STORE points at it"),
            ),
            Error::Timeout { .. } => (
                code::UNREACHABLE,
                "timeout",
                Some("check that the store is running and that --store / KV_STORE points at it"),
            ),
            Error::Auth { .. } => (
                code::UNREACHABLE,
                "auth",
                Some("check the user, password or token in the store URL"),
            ),
            Error::LockLost { .. } => (code::LOCK_LOST, "lock_lost", None),
            Error::OutcomeUnknown { .. } => (
                code::OUTCOME_UNKNOWN,
                "outcome_unknown",
                Some("re-read the key (`kvctl get KEY --version`) before retrying"),
            ),
            Error::Compacted { .. } => (
                code::COMPACTED,
                "compacted",
                Some("watch without --since to start from the current state"),
            ),
            _ => (code::OTHER, "error", None),
        };
        Failure {
            message: error.to_string(),
            hint,
            code,
            kind,
        }
    }
}

/// Writes results in the chosen format.
pub struct Printer {
    format: Output,
    stdout: std::io::Stdout,
}

impl Printer {
    /// A printer to stdout.
    pub fn new(format: Output) -> Printer {
        Printer {
            format,
            stdout: std::io::stdout(),
        }
    }

    /// True for JSON output.
    pub fn json(&self) -> bool {
        self.format == Output::Json
    }

    /// Prints a JSON object (JSON mode) or a text line (text mode).
    pub fn emit(&self, object: Value, text: impl FnOnce() -> String) {
        let line = match self.format {
            Output::Json => object.to_string(),
            Output::Text => text(),
        };
        let mut out = self.stdout.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Prints a value: raw bytes in text mode (a newline only on a terminal), an object in JSON.
    pub fn value(&self, pair: &KvPair) {
        match self.format {
            Output::Json => self.emit(pair_json(pair), String::new),
            Output::Text => {
                let mut out = self.stdout.lock();
                let _ = out.write_all(&pair.value);
                if out.is_terminal() {
                    let _ = out.write_all(b"\n");
                }
                let _ = out.flush();
            }
        }
    }

    /// Prints `ls -r`: one object per pair in JSON; in text, aligned `key  version  value`
    /// columns, values shortened to one line.
    pub fn pairs(&self, pairs: &[KvPair]) {
        let key_width = pairs.iter().map(|p| p.key.as_str().chars().count()).max();
        let version_width = pairs.iter().map(|p| p.version.to_string().len()).max();
        for pair in pairs {
            self.emit(pair_json(pair), || {
                format!(
                    "{:key_width$}  {:>version_width$}  {}",
                    pair.key.as_str(),
                    pair.version,
                    short_value(&pair.value),
                    key_width = key_width.unwrap_or(0),
                    version_width = version_width.unwrap_or(0),
                )
            });
        }
    }

    /// Prints one entry of `ls`.
    pub fn child(&self, child: &Child) {
        self.emit(
            json!({"key": child.key.as_str(), "has_value": child.has_value, "has_children": child.has_children}),
            || match (child.has_value, child.has_children) {
                (true, true) => format!("{}\n{}/", child.key, child.key),
                (false, true) => format!("{}/", child.key),
                _ => child.key.to_string(),
            },
        );
    }

    /// Prints one watch event.
    pub fn event(&self, event: &WatchEvent) {
        let kind = match event.kind {
            EventKind::Put => "put",
            EventKind::Delete => "delete",
            EventKind::Synced => "synced",
        };
        let mut object =
            json!({"event": kind, "key": event.key.as_str(), "version": event.version});
        if event.kind == EventKind::Put {
            extend(&mut object, value_fields(&event.value));
        }
        self.emit(object, || match event.kind {
            EventKind::Put => format!(
                "PUT {} {} {}",
                event.key,
                event.version,
                text_value(&event.value)
            ),
            EventKind::Delete => format!("DELETE {} {}", event.key, event.version),
            EventKind::Synced => format!("SYNCED {} {}", event.key, event.version),
        });
    }
}

/// A pair as a JSON object.
pub fn pair_json(pair: &KvPair) -> Value {
    let mut object = json!({"key": pair.key.as_str(), "version": pair.version});
    extend(&mut object, value_fields(&pair.value));
    object
}

/// `value` and `encoding` fields: UTF-8 where the bytes are, base64 otherwise.
pub fn value_fields(value: &[u8]) -> Map<String, Value> {
    let (value, encoding) = match std::str::from_utf8(value) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(value),
            "base64",
        ),
    };
    let mut fields = Map::new();
    fields.insert("value".into(), value.into());
    fields.insert("encoding".into(), encoding.into());
    fields
}

fn extend(object: &mut Value, fields: Map<String, Value>) {
    if let Value::Object(map) = object {
        map.extend(fields);
    }
}

/// Longest value `ls -r` shows in text, in characters; longer ones end with `…`.
const SHORT_VALUE: usize = 60;

/// A value shortened for a table column: printable UTF-8 as is, otherwise `base64:...`,
/// cut to [`SHORT_VALUE`] characters with `…` and the full size.
fn short_value(value: &[u8]) -> String {
    let shown = text_value(value);
    if shown.chars().count() <= SHORT_VALUE {
        return shown;
    }
    let cut: String = shown.chars().take(SHORT_VALUE).collect();
    format!("{cut}… ({} bytes)", value.len())
}

/// A value for a one-line text display: as is if printable UTF-8, else `base64:...`.
pub fn text_value(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(value)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_fit_a_line_and_mark_binary() {
        assert_eq!(short_value(b"blue"), "blue");
        assert_eq!(short_value(b"a\nb"), "base64:YQpi");
        let long = short_value(&[b'x'; 100]);
        assert!(long.ends_with("… (100 bytes)"), "{long}");
        assert_eq!(long.chars().filter(|c| *c == 'x').count(), SHORT_VALUE);
        assert!(short_value(&[0xff; 200]).starts_with("base64:"));
    }
}
