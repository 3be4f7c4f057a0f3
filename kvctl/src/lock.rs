//! `kvctl lock`, `kvctl lease`, `kvctl elect`: run a command (or wait for a signal) while
//! holding a lock, a lease or the leadership; what is held is given up when it ends.

use std::time::Duration;

use kv::{LockOptions, LockScope, Store, Validity};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::cli::LockArgs;
use crate::output::{Failure, code};
use crate::watchdog::Watchdog;

/// How long a command gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// Acquires the lock, runs the command, releases the lock, and returns the command's status.
/// If the lock is lost while the command runs, the command gets SIGTERM (then SIGKILL after
/// a grace period) and kvctl fails with exit code 4.
pub async fn run(store: &dyn Store, args: LockArgs) -> Result<u8, Failure> {
    let scope = if args.subtree {
        LockScope::Subtree
    } else {
        LockScope::Key
    };
    let lock = store
        .new_lock(&args.key, LockOptions::default().ttl(args.ttl).scope(scope))
        .await?;
    let guard = tokio::select! {
        guard = lock.acquire() => guard?,
        _ = tokio::signal::ctrl_c() => return Err(Failure::new(130, "interrupted while waiting for the lock")),
    };
    // On stderr: stdout belongs to the command.
    eprintln!(
        "kvctl: holding the lock on {} with fencing token {}",
        guard.key(),
        guard.fencing_token()
    );
    let env = [
        ("KV_LOCK_KEY", guard.key().to_string()),
        ("KV_FENCING_TOKEN", guard.fencing_token().to_string()),
    ];
    let held = hold(&args.command, &env, guard.lost(), guard.validity()).await?;
    match held {
        Held::Exited(status) => {
            guard.release().await?;
            Ok(status)
        }
        Held::Lost(what) => Err(Failure::new(
            code::LOCK_LOST,
            format!("the lock on {} was lost {what}", args.key),
        )),
    }
}

/// How holding something ended.
pub enum Held {
    /// The command exited with this status (or, without a command, a signal asked kvctl to
    /// stop: 0); give up what is held.
    Exited(u8),
    /// It was lost; the message says while what.
    Lost(String),
}

/// Runs `command` (with `env`) until it exits, or without a command waits for SIGTERM,
/// SIGINT or SIGHUP; if `lost` fires first the command gets SIGTERM (then SIGKILL after a
/// grace period). Signals to kvctl are forwarded to the command, which decides how to stop.
///
/// While the command runs, a watchdog process ([`crate::watchdog`]) follows `valid` (the
/// deadline `lost` fires at, moved on by each renewal) and stops the command when it passes
/// even if kvctl cannot (stopped, frozen, killed). A Ctrl-Z (SIGTSTP) stops the command, then
/// kvctl; when kvctl is continued, so is the command, unless what was held ran out meanwhile.
pub async fn hold(
    command: &[String],
    env: &[(&str, String)],
    lost: kv::CancellationToken,
    valid: Validity,
) -> Result<Held, Failure> {
    let mut signals = Signals::new()?;
    let Some((program, arguments)) = command.split_first() else {
        return Ok(tokio::select! {
            _ = signals.next() => Held::Exited(0),
            _ = lost.cancelled() => Held::Lost("while kvctl held it".into()),
        });
    };
    eprintln!("kvctl: running {program}");
    let mut command = Command::new(program);
    command
        .args(arguments)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        // Its own process group: a terminal's Ctrl-C reaches kvctl, which forwards it once.
        .process_group(0);
    die_with_parent(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| Failure::new(code::USAGE, format!("cannot run {program}: {e}")))?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let mut deadlines = valid.watch();
    // Without a deadline (a lock not renewed on a timer) there is nothing to watch over.
    let mut watchdog = match (group, valid.until(), valid.ttl()) {
        (Some(group), Some(until), Some(ttl)) => {
            // SIGKILL half a safety margin after the deadline: before the server's expiry.
            let grace = kv::backend::safety_margin(ttl) / 2;
            Some(Watchdog::start(group, grace, until)?)
        }
        _ => None,
    };
    let mut suspend = listen(tokio::signal::unix::SignalKind::from_raw(
        Signal::SIGTSTP as i32,
    ))?;
    let held = loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| Failure::new(code::OTHER, format!("waiting for {program}: {e}")))?;
                // Ended by the watchdog (kvctl was stopped past the deadline), or at the time
                // it ran out: what was held is not given up as if nothing had happened.
                if !still_held(&lost, &valid) {
                    break Held::Lost(format!(
                        "while {program} ran; it ended ({})",
                        describe_status(status)
                    ));
                }
                break Held::Exited(exit_status(status));
            }
            _ = lost.cancelled() => {
                stop(&mut child, group).await;
                break Held::Lost(format!("while {program} ran; it was sent SIGTERM"));
            }
            signal = signals.next() => {
                // Forward, then keep waiting: the command decides how to stop, and what is
                // held is given up only once it has.
                if let Some(group) = group {
                    let _ = killpg(group, signal);
                }
            }
            Ok(()) = deadlines.changed() => {
                let until = *deadlines.borrow_and_update();
                if let (Some(watchdog), Some(until)) = (&mut watchdog, until) {
                    watchdog.until(until);
                }
            }
            _ = suspend.recv() => suspend_with(group, &lost, &valid),
        }
    };
    if let Some(watchdog) = watchdog {
        watchdog.done();
    }
    Ok(held)
}

/// Ctrl-Z: stops the command's group, then kvctl itself; once kvctl is continued (`fg`,
/// `bg`), continues the command if what is held is still guaranteed. If it is not, the
/// command stays stopped until `lost` fires and [`stop`] ends it (the watchdog may have
/// already).
fn suspend_with(group: Option<Pid>, lost: &kv::CancellationToken, valid: &Validity) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGSTOP);
    }
    // Returns once kvctl is continued.
    let _ = kill(Pid::this(), Signal::SIGSTOP);
    if let (Some(group), true) = (group, still_held(lost, valid)) {
        let _ = killpg(group, Signal::SIGCONT);
    }
}

/// Neither lost nor past its deadline (which `lost` may not have noticed yet: kvctl was
/// stopped).
fn still_held(lost: &kv::CancellationToken, valid: &Validity) -> bool {
    !lost.is_cancelled()
        && valid
            .until()
            .is_none_or(|until| until > std::time::Instant::now())
}

/// "exit code N" or "signal N".
fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "unknown status".into(),
    }
}

/// SIGTERM, SIGINT and SIGHUP delivered to kvctl, to forward to the command.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// A handler for `kind`, delivered to kvctl.
fn listen(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Failure> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Failure::new(code::OTHER, format!("cannot handle signals: {e}")))
}

impl Signals {
    fn new() -> Result<Signals, Failure> {
        use tokio::signal::unix::SignalKind;
        Ok(Signals {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
            hup: listen(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.hup.recv() => Signal::SIGHUP,
        }
    }
}

/// On Linux the command gets SIGTERM if kvctl dies (even by SIGKILL), so it never runs on
/// unnoticed without the lock.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// SIGTERM to the command's process group (and SIGCONT, should it be stopped), then SIGKILL
/// if it outlives the grace period.
async fn stop(child: &mut Child, group: Option<Pid>) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
        let _ = killpg(group, Signal::SIGCONT);
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// The command's exit code, or 128 + the signal that ended it.
fn exit_status(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        _ => 1,
    }
}
