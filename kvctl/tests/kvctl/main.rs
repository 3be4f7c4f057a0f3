//! kvctl end to end: the built binary, every verb, JSON output, exit codes, `lock`.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

mod embedded;
mod lock;
mod servers;

use lock::{first_stderr_line, wait_for};

/// A kvctl invocation with its own data directory (so the embedded default is private).
struct Kvctl {
    home: tempfile::TempDir,
    store: Option<&'static str>,
}

impl Kvctl {
    fn embedded() -> Kvctl {
        Kvctl {
            home: tempfile::tempdir().unwrap(),
            store: None,
        }
    }

    fn memory() -> Kvctl {
        Kvctl {
            home: tempfile::tempdir().unwrap(),
            store: Some("memory://"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kvctl"));
        command
            .args(args)
            .env("XDG_DATA_HOME", self.home.path())
            .env_remove("KV_STORE");
        if let Some(store) = self.store {
            command.env("KV_STORE", store);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs and expects exit code `code`; returns stdout.
    #[track_caller]
    fn expect(&self, args: &[&str], code: i32) -> String {
        let output = self.run(args);
        assert_status(&output, code, args);
        String::from_utf8(output.stdout).unwrap()
    }
}

#[track_caller]
fn assert_status(output: &Output, code: i32, what: &[&str]) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "kvctl {what:?}: stdout {:?}, stderr {:?}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
