//! `kvctl lock` (and `elect`, `lease`) running a command: exit status, signals, a lost lock,
//! a frozen or stopped kvctl, Ctrl-Z.

use super::*;

#[test]
fn lock_runs_the_command_and_exits_with_its_status() {
    for kv in [Kvctl::embedded(), Kvctl::memory()] {
        let out = kv.expect(
            &[
                "lock",
                "jobs/backup",
                "--",
                "sh",
                "-c",
                "echo key=$KV_LOCK_KEY token=$KV_FENCING_TOKEN; exit 7",
            ],
            7,
        );
        assert!(out.starts_with("key=jobs/backup token="), "{out}");
        kv.expect(
            &["lock", "--subtree", "--ttl", "2s", "jobs", "--", "true"],
            0,
        );
        kv.expect(&["lock", "jobs", "--", "/nonexistent/command"], 2);
        kv.expect(&["lock", "jobs"], 2);
    }
}

#[test]
fn a_lost_lock_signals_the_command() {
    let kv = Kvctl::memory();
    let marker = kv.home.path().join("terminated");
    let script = format!(
        "sleep 30 >/dev/null 2>&1 & trap 'touch {}; kill $!; exit 143' TERM; wait",
        marker.display()
    );
    let mut child = kv
        .command(&["lock", "--ttl", "1s", "lease", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    std::thread::sleep(Duration::from_millis(500));
    // Freeze kvctl (not its command) past the lease: it cannot renew, as in a long pause.
    kill(pid, Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    kill(pid, Signal::SIGCONT).unwrap();
    let status = exit_within(
        &mut child,
        Duration::from_secs(20),
        "react to the lost lock",
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("was lost"), "{stderr}");
    assert!(wait_for(&marker), "the command must have received SIGTERM");
}

/// Starts `kvctl lock` on the embedded store with a command that records SIGTERM in a marker
/// file (and exits 7); returns once the lock is held.
pub(crate) fn lock_with_trap(kv: &Kvctl, marker: &Path) -> std::process::Child {
    let script = format!(
        "trap 'echo term > {}; exit 7' TERM; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done",
        marker.display()
    );
    let mut child = kv
        .command(&["lock", "job", "--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = first_stderr_line(&mut child);
    assert!(started.contains("fencing token"), "{started}");
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[test]
fn a_signal_to_kvctl_lock_reaches_the_command_before_the_lock_is_released() {
    let kv = Kvctl::embedded();
    let marker = kv.home.path().join("terminated");
    let mut child = lock_with_trap(&kv, &marker);
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = exit_within(&mut child, Duration::from_secs(15), "stop");
    assert!(wait_for(&marker), "the command must have received SIGTERM");
    assert_eq!(
        status.code(),
        Some(7),
        "kvctl exits with the command's status"
    );
    // The lock was released: another holder gets it at once.
    kv.expect(&["lock", "job", "--", "true"], 0);
}

#[test]
fn a_killed_kvctl_lock_does_not_leave_its_command_running() {
    let kv = Kvctl::embedded();
    let marker = kv.home.path().join("terminated");
    let mut child = lock_with_trap(&kv, &marker);
    child.kill().unwrap(); // SIGKILL: kvctl cannot forward anything
    child.wait().unwrap();
    assert!(
        wait_for(&marker),
        "the command must get SIGTERM when kvctl dies (parent-death signal)"
    );
}

/// Waits for a child to exit; panics saying it did not `what` in time.
pub(crate) fn exit_within(
    child: &mut std::process::Child,
    within: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < within, "kvctl did not {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first line a child wrote on its (piped) stderr, e.g. `kvctl lock`'s "holding the lock".
pub(crate) fn first_stderr_line(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    line
}

pub(crate) fn wait_for(path: &Path) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A kvctl process that is continued and killed if a test ends (or fails) while it runs, so
/// that a stopped one is never left behind.
pub(crate) struct Reaped(std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let pid = Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(0));
            let _ = kill(pid, Signal::SIGCONT);
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Now, in nanoseconds since the epoch, as `date +%s%N` prints it.
pub(crate) fn epoch_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The number a file holds (a `date +%s%N` a command wrote), once it holds one.
pub(crate) fn read_nanos(path: &Path) -> Option<u128> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A shell command that writes the time into `mark` every 50 ms, forever.
pub(crate) fn marking(mark: &Path) -> String {
    format!(
        "while :; do date +%s%N > {m}.new; mv {m}.new {m}; sleep 0.05; done",
        m = mark.display()
    )
}

/// `holder` (a kvctl that runs a command writing the time into `mark` while it holds something)
/// is frozen with SIGSTOP once it holds it; then `contend` (a second kvctl that must wait for
/// the first to lose it) runs until it gets it, and returns when it did (epoch ns). The first
/// command must be gone by then: its last mark before the contender's time. Returns the times
/// from the pause to the command's last mark and to the contender's success.
pub(crate) fn a_frozen_holder_stops_its_command(
    kv: &Kvctl,
    holder: &[&str],
    mark: &Path,
    contend: impl FnOnce() -> u128,
) -> (Duration, Duration) {
    let (mut first, pid) = holding(kv, holder, mark);
    let paused = epoch_nanos();
    kill(pid, Signal::SIGSTOP).unwrap();
    let got = contend();
    // Let a command that outlived the lock write a mark or two more, so that it shows.
    std::thread::sleep(Duration::from_millis(300));
    let last = read_nanos(mark).unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    let status = exit_within(&mut first, Duration::from_secs(20), "end after the pause");
    assert_eq!(
        status.code(),
        Some(4),
        "the first kvctl reports what it lost"
    );
    let since = |t: u128| Duration::from_nanos(u64::try_from(t.saturating_sub(paused)).unwrap());
    assert!(
        last < got,
        "the first command ran on after the other client got it: its last mark {:?} after \
         the pause, the other got it {:?} after",
        since(last),
        since(got)
    );
    (since(last), since(got))
}

/// Runs `kvctl args` (which waits to get something, then runs `date +%s%N > got`) and returns
/// that time.
pub(crate) fn contender(kv: &Kvctl, args: &[&str], got: &Path) -> u128 {
    let output = kv.run(args);
    assert_status(&output, 0, args);
    read_nanos(got).expect("the contender's command ran")
}

#[test]
fn a_stopped_kvctl_lock_stops_its_command_before_another_gets_the_lock() {
    let kv = Kvctl::embedded();
    let (mark, got) = (kv.home.path().join("mark"), kv.home.path().join("got"));
    let (script, wrote) = (marking(&mark), format!("date +%s%N > {}", got.display()));
    let (ended, taken) = a_frozen_holder_stops_its_command(
        &kv,
        &["lock", "--ttl", "3s", "pk", "--", "sh", "-c", &script],
        &mark,
        || {
            contender(
                &kv,
                &["lock", "--ttl", "3s", "pk", "--", "sh", "-c", &wrote],
                &got,
            )
        },
    );
    eprintln!(
        "lock (TTL 3 s, SQLite): kvctl stopped; its command ended {ended:?} after the pause, \
         another kvctl got the lock {taken:?} after"
    );
}

#[test]
fn a_stopped_kvctl_elect_stops_its_command_before_another_leads() {
    let kv = Kvctl::embedded();
    let (mark, got) = (kv.home.path().join("mark"), kv.home.path().join("got"));
    let (script, wrote) = (marking(&mark), format!("date +%s%N > {}", got.display()));
    let (ended, taken) = a_frozen_holder_stops_its_command(
        &kv,
        &[
            "elect", "--ttl", "3s", "boss", "a", "--", "sh", "-c", &script,
        ],
        &mark,
        || {
            contender(
                &kv,
                &[
                    "elect", "--ttl", "3s", "boss", "b", "--", "sh", "-c", &wrote,
                ],
                &got,
            )
        },
    );
    eprintln!(
        "elect (TTL 3 s, SQLite): kvctl stopped; its command ended {ended:?} after the pause, \
         another candidate was elected {taken:?} after"
    );
}

#[test]
fn a_stopped_kvctl_lease_stops_its_command_before_its_keys_go() {
    let kv = Kvctl::embedded();
    let mark = kv.home.path().join("mark");
    let script = marking(&mark);
    let (ended, gone) = a_frozen_holder_stops_its_command(
        &kv,
        &[
            "lease",
            "--ttl",
            "3s",
            "svc/me=up",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &mark,
        || {
            // The other side of a lease: it sees the key go.
            let started = Instant::now();
            while kv.run(&["exists", "svc/me"]).status.code() == Some(0) {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the key stayed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            epoch_nanos()
        },
    );
    eprintln!(
        "lease (TTL 3 s, SQLite): kvctl stopped; its command ended {ended:?} after the pause, \
         its key was gone {gone:?} after"
    );
}

/// The state letter of a process in /proc (`T`: stopped).
pub(crate) fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.chars().next().unwrap()
}

/// Starts `kvctl args`, whose command writes the time into `mark`; returns once it holds
/// what it asked for and the command has written.
pub(crate) fn holding(kv: &Kvctl, args: &[&str], mark: &Path) -> (Reaped, Pid) {
    let mut holder = Reaped(kv.command(args).stderr(Stdio::piped()).spawn().unwrap());
    let line = first_stderr_line(&mut holder);
    assert!(line.starts_with("kvctl:"), "{line}");
    let started = Instant::now();
    while read_nanos(mark).is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "no mark");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = Pid::from_raw(i32::try_from(holder.id()).unwrap());
    (holder, pid)
}

/// True if the command's mark changes within 400 ms.
pub(crate) fn mark_advances(mark: &Path) -> bool {
    let before = read_nanos(mark);
    std::thread::sleep(Duration::from_millis(400));
    read_nanos(mark) != before
}

#[test]
fn ctrl_z_stops_kvctl_lock_and_its_command_and_fg_continues_both() {
    let kv = Kvctl::embedded();
    let mark = kv.home.path().join("mark");
    let script = marking(&mark);
    let (mut holder, pid) = holding(
        &kv,
        &["lock", "--ttl", "3s", "pk", "--", "sh", "-c", &script],
        &mark,
    );
    // What a terminal's Ctrl-Z sends to the foreground job.
    kill(pid, Signal::SIGTSTP).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(process_state(holder.id()), 'T', "kvctl stopped");
    assert!(!mark_advances(&mark), "the command stopped with kvctl");
    // `fg` within the lock's deadline: both go on, the lock still held.
    kill(pid, Signal::SIGCONT).unwrap();
    assert!(mark_advances(&mark), "the command continued with kvctl");
    assert!(holder.try_wait().unwrap().is_none(), "kvctl runs on");
    kill(pid, Signal::SIGTERM).unwrap();
    let status = exit_within(&mut holder, Duration::from_secs(15), "stop on SIGTERM");
    assert_eq!(status.code(), Some(143), "the command's status (SIGTERM)");
    kv.expect(&["lock", "pk", "--", "true"], 0);
}

#[test]
fn after_a_long_ctrl_z_the_command_is_terminated_not_continued() {
    let kv = Kvctl::embedded();
    let mark = kv.home.path().join("mark");
    let script = marking(&mark);
    let (mut holder, pid) = holding(
        &kv,
        &["lock", "--ttl", "2s", "pk", "--", "sh", "-c", &script],
        &mark,
    );
    let paused = epoch_nanos();
    kill(pid, Signal::SIGTSTP).unwrap();
    // Past the lock's deadline: another client may hold it by now.
    std::thread::sleep(Duration::from_millis(3000));
    let last = read_nanos(&mark);
    let ran = Duration::from_nanos(u64::try_from(last.unwrap().saturating_sub(paused)).unwrap());
    assert!(
        ran < Duration::from_millis(500),
        "the command ran on for {ran:?} after Ctrl-Z"
    );
    kill(pid, Signal::SIGCONT).unwrap();
    let status = exit_within(&mut holder, Duration::from_secs(15), "report the loss");
    assert_eq!(status.code(), Some(4), "the lock was lost while stopped");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_nanos(&mark), last, "the command never ran again");
}
