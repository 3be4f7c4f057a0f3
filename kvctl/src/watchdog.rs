//! The guard that stops `kvctl lock/lease/elect -- CMD`'s command when what kvctl holds for it
//! runs out, whatever happens to kvctl: a second kvctl process (`kvctl __watchdog`), in a
//! process group of its own (a Ctrl-Z or a SIGSTOP of kvctl does not stop it), that kvctl tells
//! after every renewal until when the lock is guaranteed (the deadline `lost()` fires at: the
//! last renewal sent + TTL − TTL/10). When that time passes with no newer one, it sends the
//! command's process group SIGTERM (and SIGCONT, so that a stopped command gets it), then
//! SIGKILL half a safety margin later (TTL/20): the command is gone before the server can give
//! the lock to anyone else (not before the last renewal's arrival + TTL). Told "done" (the
//! command ended), it exits; if kvctl dies, it still enforces the last deadline, then exits.
//!
//! Deadlines cross the pipe as CLOCK_BOOTTIME nanoseconds, a clock both processes share that
//! keeps counting while the machine is suspended (the server's clock does too).

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;

use crate::output::{Failure, code};

/// The watchdog, seen from kvctl: a child process fed deadlines on its stdin.
pub struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts a watchdog over process group `pgid` that kills it `grace` after SIGTERM, and
    /// gives it `until`, the current deadline.
    pub fn start(pgid: Pid, grace: Duration, until: Instant) -> Result<Watchdog, Failure> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::new(code::OTHER, format!("cannot find kvctl itself: {e}")))?;
        let mut child = Command::new(exe)
            .args([
                "__watchdog",
                &pgid.as_raw().to_string(),
                &grace.as_millis().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Not in kvctl's process group: whatever stops kvctl's group does not stop it.
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::new(code::OTHER, format!("cannot start the watchdog: {e}")))?;
        let stdin = child.stdin.take();
        let mut watchdog = Watchdog { child, stdin };
        watchdog.until(until);
        Ok(watchdog)
    }

    /// The guarantee now runs until `until`.
    pub fn until(&mut self, until: Instant) {
        let remaining = until.saturating_duration_since(Instant::now());
        let deadline = boottime().saturating_add(remaining);
        self.send(&format!("until {}\n", deadline.as_nanos()));
    }

    /// The command has ended: the watchdog exits (and is waited for).
    pub fn done(mut self) {
        self.send("done\n");
        self.stdin = None;
        let _ = self.child.wait();
    }

    fn send(&mut self, line: &str) {
        // A watchdog that died cannot be told anything; the parent-death signal and kvctl's
        // own `lost()` handling remain.
        if let Some(stdin) = &mut self.stdin
            && stdin.write_all(line.as_bytes()).is_err()
        {
            self.stdin = None;
        }
    }
}

/// Now on CLOCK_BOOTTIME.
fn boottime() -> Duration {
    clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(Duration::ZERO, Duration::from)
}

/// What kvctl has said so far.
#[derive(Default)]
struct Told {
    until: Option<Duration>,
    done: bool,
    /// kvctl is gone (its end of the pipe closed without "done").
    orphaned: bool,
}

/// `kvctl __watchdog PGID GRACE_MS`: the watchdog itself (see the module's documentation).
pub fn run(pgid: i32, grace: Duration) -> u8 {
    let told = Arc::new((Mutex::new(Told::default()), Condvar::new()));
    let listening = told.clone();
    std::thread::spawn(move || {
        let (state, changed) = &*listening;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            match line.split_once(' ') {
                Some(("until", nanos)) => {
                    if let Ok(nanos) = nanos.parse::<u64>() {
                        state.until = Some(Duration::from_nanos(nanos));
                    }
                }
                _ if line == "done" => state.done = true,
                _ => {}
            }
            changed.notify_all();
        }
        state.lock().unwrap_or_else(|p| p.into_inner()).orphaned = true;
        changed.notify_all();
    });
    let (state, changed) = &*told;
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if state.done {
            return 0;
        }
        let now = boottime();
        match state.until {
            Some(until) if now >= until => break,
            Some(until) => {
                state = changed
                    .wait_timeout(state, until - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            // Nothing promised yet and nobody left to promise it.
            None if state.orphaned => return 0,
            None => state = changed.wait(state).unwrap_or_else(|p| p.into_inner()),
        }
    }
    drop(state);
    let group = Pid::from_raw(pgid);
    if killpg(group, Signal::SIGTERM).is_err() {
        return 0; // the command is gone already
    }
    let _ = killpg(group, Signal::SIGCONT);
    eprintln!(
        "kvctl: what kvctl held for the command ran out while kvctl could not renew it \
         (stopped, frozen or gone); the command was sent SIGTERM"
    );
    std::thread::sleep(grace);
    if killpg(group, None).is_ok() {
        let _ = killpg(group, Signal::SIGKILL);
    }
    0
}
