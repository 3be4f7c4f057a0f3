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
}

impl Failure {
    /// A failure with a message and code.
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            hint: None,
            code,
        }
    }

    /// Prints the failure on stderr.
    pub fn print(&self) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "kvctl: {}", self.message);
        if let Some(hint) = self.hint {
            let _ = writeln!(stderr, "hint: {hint}");
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let (code, hint) = match &error {
            Error::InvalidKey { .. } => (
                code::USAGE,
                Some(
                    "keys are /-separated segments; no empty, `.` or `..` segments, no control characters",
                ),
            ),
            Error::InvalidUrl { .. } => (
                code::USAGE,
                Some("store URLs look like sled:///path, memory://, etcd://host:2379/root"),
            ),
            Error::InvalidArgument { .. }
            | Error::ValueTooLarge { .. }
            | Error::Unsupported { .. } => (code::USAGE, None),
            Error::Conflict { .. } => (
                code::NOT_FOUND,
                Some("read the current version with `kvctl get KEY --version` and retry"),
            ),
            Error::Unavailable { .. } | Error::Timeout { .. } => (
                code::UNREACHABLE,
                Some("check that the store is running and that --store / KV_STORE points at it"),
            ),
            Error::Auth { .. } => (
                code::UNREACHABLE,
                Some("check the user, password or token in the store URL"),
            ),
            Error::LockLost { .. } => (code::LOCK_LOST, None),
            Error::Compacted { .. } => (
                code::OTHER,
                Some("watch without --since to start from the current state"),
            ),
            _ => (code::OTHER, None),
        };
        Failure {
            message: error.to_string(),
            hint,
            code,
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
fn value_fields(value: &[u8]) -> Map<String, Value> {
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
