//! kvctl end to end: the built binary, every verb, JSON output, exit codes, `lock`.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

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

#[test]
fn a_session_on_the_embedded_default() {
    let kv = Kvctl::embedded();
    assert_eq!(
        kv.expect(&["put", "app/color", "blue"], 0),
        "OK version 1\n"
    );
    assert_eq!(
        kv.expect(&["get", "app/color"], 0),
        "blue",
        "raw value, no newline off a terminal"
    );
    assert_eq!(kv.expect(&["get", "app/color", "--version"], 0), "1\n");
    assert_eq!(
        kv.expect(&["put", "/app/size/", "XL", "--ttl", "1h"], 0),
        "OK version 2\n"
    );
    kv.expect(&["put", "app/deep/leaf", "x"], 0);
    assert_eq!(kv.expect(&["ls"], 0), "app/\n");
    assert_eq!(
        kv.expect(&["ls", "app"], 0),
        "app/color\napp/deep/\napp/size\n"
    );
    assert_eq!(
        kv.expect(&["ls", "-r", "app"], 0),
        "app/color      1  blue\napp/deep/leaf  3  x\napp/size       2  XL\n",
        "key, version and value, aligned"
    );
    assert_eq!(kv.expect(&["exists", "app/color"], 0), "true\n");
    assert_eq!(
        kv.expect(&["exists", "app"], 1),
        "false\n",
        "a directory is not a key"
    );
    assert_eq!(
        kv.expect(&["cas", "app/color", "green", "--version", "1"], 0),
        "OK version 4\n"
    );
    kv.expect(&["cas", "app/color", "red", "--version", "1"], 1);
    kv.expect(&["cas", "app/color", "red", "--absent"], 1);
    kv.expect(&["cas", "app/owner", "me", "--absent"], 0);
    assert_eq!(kv.expect(&["get", "app/color"], 0), "green");
    assert_eq!(
        kv.expect(&["watch", "--tree", "app", "--count", "2"], 0),
        "PUT app/color 4 green\nPUT app/deep/leaf 3 x\n"
    );
    let synced = kv.expect(&["watch", "--tree", "app", "--synced", "--count", "5"], 0);
    let last = synced.lines().last().unwrap_or_default().to_owned();
    assert_eq!(synced.lines().count(), 5, "{synced}");
    assert!(last.starts_with("SYNCED app "), "{synced}");
    kv.expect(&["del", "app/color"], 0);
    kv.expect(&["del", "app/color"], 1);
    kv.expect(&["get", "app/color"], 1);
    kv.expect(&["rm", "app/owner"], 0);
    assert_eq!(kv.expect(&["rm", "-r", "app"], 0), "deleted 2 keys\n");
    assert_eq!(kv.expect(&["ls", "-r"], 0), "");
}

#[test]
fn json_output_and_binary_values() {
    let kv = Kvctl::embedded();
    let put = kv.run_with_stdin(&["put", "bin", "-o", "json"], b"\xff\x00\x01");
    assert_status(&put, 0, &["put", "bin"]);
    assert_eq!(
        json_lines(std::str::from_utf8(&put.stdout).unwrap())[0]["version"],
        1
    );
    let file = kv.home.path().join("value.txt");
    std::fs::write(&file, "from a file").unwrap();
    kv.expect(&["put", "text", "--file", file.to_str().unwrap()], 0);
    let listed = json_lines(&kv.expect(&["ls", "-r", "-o", "json"], 0));
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (
            listed[0]["key"].as_str(),
            listed[0]["encoding"].as_str(),
            listed[0]["value"].as_str()
        ),
        (Some("bin"), Some("base64"), Some("/wAB"))
    );
    assert_eq!(
        (listed[1]["value"].as_str(), listed[1]["encoding"].as_str()),
        (Some("from a file"), Some("utf8"))
    );
    let got = json_lines(&kv.expect(&["get", "text", "-o", "json"], 0));
    assert_eq!(
        (got[0]["key"].as_str(), got[0]["version"].as_u64()),
        (Some("text"), Some(2))
    );
    let raw = kv.run(&["get", "bin"]);
    assert_eq!(raw.stdout, b"\xff\x00\x01");
    let exists = json_lines(&kv.expect(&["exists", "nope", "-o", "json"], 1));
    assert_eq!(exists[0]["exists"], false);
    let children = json_lines(&kv.expect(&["ls", "-o", "json"], 0));
    assert_eq!(children[0]["has_value"], true);
    let events = json_lines(&kv.expect(&["watch", "text", "--count", "1", "-o", "json"], 0));
    assert_eq!(
        (events[0]["event"].as_str(), events[0]["value"].as_str()),
        (Some("put"), Some("from a file"))
    );
    let refused = json_lines(&kv.expect(&["rm", "-r", "", "-o", "json"], 2));
    assert_eq!(refused[0]["kind"], "usage", "the root needs --force");
    kv.expect(&["rm", "-r", "/"], 2);
    assert_eq!(
        json_lines(&kv.expect(&["ls", "-r", "-o", "json"], 0)).len(),
        2
    );
    let removed = json_lines(&kv.expect(&["rm", "-r", "", "--force", "-o", "json"], 0));
    assert_eq!(removed[0]["deleted"], 2);
    let missing = json_lines(&kv.expect(&["del", "text", "-o", "json"], 1));
    assert_eq!(
        (
            missing[0]["kind"].as_str(),
            missing[0]["exit_code"].as_i64()
        ),
        (Some("not_found"), Some(1)),
        "errors are a JSON object on stdout too"
    );
}

#[test]
fn txn_applies_stdin_all_or_nothing() {
    let kv = Kvctl::embedded();
    kv.expect(&["put", "queue/7", "job"], 0);
    let claim = b"# claim job 7\nif jobs/7/owner missing\nif queue/7 value job\nput jobs/7/owner w 1\ndel queue/7\ndel queue/8\n";
    let output = kv.run_with_stdin(&["txn", "-o", "json"], claim);
    assert_status(&output, 0, &["txn"]);
    let lines = json_lines(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        (&lines[0]["op"], &lines[0]["key"]),
        (&json!("put"), &json!("jobs/7/owner"))
    );
    assert!(lines[0]["version"].as_u64().unwrap() > 0);
    assert_eq!(
        lines[1],
        json!({"op": "del", "key": "queue/7", "existed": true})
    );
    assert_eq!(
        lines[2],
        json!({"op": "del", "key": "queue/8", "existed": false})
    );
    assert_eq!(kv.expect(&["get", "jobs/7/owner"], 0), "w 1");
    // The same claim again: the owner exists now, so nothing changes and the exit code is 1.
    kv.expect(&["put", "queue/7", "job"], 0);
    let again = kv.run_with_stdin(&["txn"], claim);
    assert_status(&again, 1, &["txn", "again"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("jobs/7/owner"));
    kv.expect(&["get", "queue/7"], 0);
    let bad = kv.run_with_stdin(&["txn"], b"put a 1\nif b versoin 3\n");
    assert_status(&bad, 2, &["txn", "bad line"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 2"));
    kv.expect(&["get", "a"], 1);
}

#[test]
fn lease_holds_keys_while_the_command_runs() {
    let kv = Kvctl::embedded();
    kv.expect(&["put", "boot", "x"], 0);
    let kvctl = env!("CARGO_BIN_EXE_kvctl");
    let inside = format!("{kvctl} get svc/nodes/a && {kvctl} get svc/nodes/b && exit 3");
    let output = kv.run(&[
        "lease",
        "--ttl",
        "5s",
        "svc/nodes/a=10.0.0.1",
        "svc/nodes/b=10.0.0.2",
        "--",
        "sh",
        "-c",
        &inside,
    ]);
    assert_status(&output, 3, &["lease"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "10.0.0.110.0.0.2");
    kv.expect(&["get", "svc/nodes/a"], 1);
    kv.expect(&["lease", "novalue"], 2);
}

/// etcdctl's lease verbs across kvctl processes: `grant` prints an ID that outlives it,
/// `put --lease` binds keys, `keepalive` renews (here while a command runs), and the keys go
/// once nothing renews; `revoke` deletes at once; an ended lease is exit 1, a bad ID exit 2.
#[test]
fn lease_ids_work_across_kvctl_processes() {
    let kv = Kvctl::embedded();
    let id = kv.expect(&["lease", "grant", "--ttl", "2s"], 0);
    let id = id.trim();
    kv.expect(&["put", "--lease", id, "svc/a", "1"], 0);
    // Past the TTL while `keepalive` renews: the key stays.
    kv.expect(&["lease", "keepalive", id, "--", "sleep", "3"], 0);
    assert_eq!(kv.expect(&["get", "svc/a"], 0), "1");
    // Nothing renews it now: it goes one TTL later.
    std::thread::sleep(Duration::from_millis(2600));
    kv.expect(&["get", "svc/a"], 1);
    kv.expect(&["lease", "keepalive", id], 1);
    kv.expect(&["put", "--lease", id, "svc/b", "1"], 1);
    kv.expect(&["put", "--lease", "not-a-number", "svc/b", "1"], 2);

    let id = kv.expect(&["lease", "grant", "--ttl", "60s"], 0);
    let id = id.trim();
    kv.expect(&["put", "--lease", id, "svc/c", "1"], 0);
    assert_eq!(kv.expect(&["lease", "revoke", id], 0), "revoked\n");
    kv.expect(&["get", "svc/c"], 1);
    kv.expect(&["lease", "revoke", id], 1);
    let json = kv.expect(&["-o", "json", "lease", "grant", "--ttl", "5s"], 0);
    assert_eq!(json_lines(&json)[0]["ttl_ms"], 5000);
    // A lease that lives in one process is refused, with what to do instead.
    let output = Kvctl::memory().run(&["lease", "grant"]);
    assert_status(&output, 2, &["lease", "grant"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("kvctl lease KEY=VALUE"));
    // So is one of a store one process holds at a time (its driver says so).
    let sled = format!("sled://{}/sled", kv.home.path().display());
    let output = kv.run(&["--store", &sled, "lease", "grant"]);
    assert_status(&output, 2, &["--store", &sled, "lease", "grant"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("a sled lease cannot"));
}

#[test]
fn elect_observes_and_holds_the_office_across_processes() {
    let kv = Kvctl::embedded();
    kv.expect(&["put", "boot", "x"], 0);
    let mut observer = kv
        .command(&[
            "elect",
            "svc/leader",
            "--observe",
            "--count",
            "3",
            "-o",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(observer.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["leader"], Value::Null, "no leader yet");
    let kvctl = env!("CARGO_BIN_EXE_kvctl");
    let inside = format!("{kvctl} get svc/leader");
    let output = kv.run(&["elect", "svc/leader", "node-1", "--", "sh", "-c", &inside]);
    assert_status(&output, 0, &["elect"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "node-1");
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(
        rest.iter().map(|l| l["leader"].clone()).collect::<Vec<_>>(),
        [json!("node-1"), Value::Null],
        "the observer saw the leader, then its resignation"
    );
    assert!(observer.wait().unwrap().success());
}

#[test]
fn exit_codes_for_scripts() {
    let kv = Kvctl::embedded();
    kv.expect(&["get", "missing"], 1);
    kv.expect(&["get", "a//b"], 2);
    kv.expect(&["put", "k", "v", "--ttl", "soon"], 2);
    kv.expect(&["cas", "k", "v"], 2);
    kv.expect(&["frobnicate"], 2);
    kv.expect(&["--store", "nonsense", "ls"], 2);
    kv.expect(&["--store", "ftp://host", "ls"], 2);
    let output = kv.run(&["get", "a//b"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid key") && stderr.contains("hint:"),
        "{stderr}"
    );
}

#[test]
fn a_sled_store_in_use_by_another_process_is_waited_for_then_exit_code_3() {
    let kv = Kvctl::embedded();
    let sled = format!("sled://{}", kv.home.path().join("sled").display());
    kv.expect(&["--store", &sled, "put", "k", "v"], 0);
    let store = format!("{sled}?busy_timeout=1s");
    let mut holder = kv
        .command(&["--store", &sled, "lock", "busy", "--", "sleep", "30"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = first_stderr_line(&mut holder);
    assert!(started.contains("fencing token"), "{started}");
    let began = Instant::now();
    let output = kv.run(&["--store", &store, "get", "k"]);
    let waited = began.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_status(&output, 3, &["get", "k"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("held by another process") && stderr.contains("busy_timeout"),
        "{stderr}"
    );
    assert!(waited >= Duration::from_secs(1), "gave up after {waited:?}");
}

#[test]
fn a_second_kvctl_waits_for_a_short_one_on_the_embedded_store() {
    let kv = Kvctl::embedded();
    kv.expect(&["put", "k", "v"], 0);
    let mut holder = kv
        .command(&["lock", "busy", "--", "sleep", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    first_stderr_line(&mut holder); // the lock is held
    // The default busy timeout (5 s) outlasts the holder: the put waits, then succeeds.
    let output = kv.run(&["put", "k", "w"]);
    assert!(holder.wait().unwrap().success());
    assert_status(&output, 0, &["put", "k", "w"]);
    assert_eq!(kv.expect(&["get", "k"], 0), "w");
}

/// Two kvctl processes on the default store at once: a watch sees a put from another kvctl,
/// and two `lock`s of one key take turns (the second waits for the first's command to end).
#[test]
fn kvctl_processes_share_the_default_store() {
    let kv = Kvctl::embedded();
    kv.expect(&["put", "app/color", "blue"], 0);
    let mut watch = kv
        .command(&["watch", "--tree", "app", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The initial state first: the watch is open before the put.
    let mut out = std::io::BufReader::new(watch.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.contains("app/color"), "{first}");
    kv.expect(&["put", "app/size", "10"], 0);
    let mut second = String::new();
    std::io::BufRead::read_line(&mut out, &mut second).unwrap();
    assert!(
        second.contains("app/size") && second.contains("10"),
        "{second}"
    );
    assert!(watch.wait().unwrap().success());

    let mut holder = kv
        .command(&["lock", "demo", "--", "sleep", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(first_stderr_line(&mut holder).contains("fencing token"));
    let began = Instant::now();
    let output = kv.run(&["lock", "demo", "--", "true"]);
    let waited = began.elapsed();
    assert!(holder.wait().unwrap().success());
    assert_status(&output, 0, &["lock", "demo"]);
    assert!(
        waited >= Duration::from_millis(500),
        "the second lock did not wait for the first: {waited:?}"
    );
}

/// A sled store left by an earlier kvctl in the data directory is not silently ignored.
#[test]
fn an_earlier_default_sled_store_is_pointed_out() {
    let kv = Kvctl::embedded();
    std::fs::create_dir_all(kv.home.path().join("kv/default")).unwrap();
    let output = kv.run(&["ls"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sled store of an earlier kvctl") && stderr.contains("--store sled://"),
        "{stderr}"
    );
}

#[test]
fn a_new_user_finds_no_traps() {
    let kv = Kvctl::embedded();
    // Reads on a store nothing was written to answer "empty" and create nothing.
    kv.expect(&["get", "app/color"], 1);
    assert_eq!(kv.expect(&["ls", "-r"], 0), "");
    let relative = kv.home.path().join("typo");
    let url = format!("sled://{}", relative.display());
    kv.expect(&["--store", &url, "ls"], 0);
    assert!(!relative.exists(), "a read created {}", relative.display());
    assert!(
        !kv.home.path().join("kv").exists(),
        "a read created the default store"
    );
    // A bare TTL is seconds, as in etcdctl and consul.
    kv.expect(&["put", "session", "x", "--ttl", "10"], 0);
    kv.expect(&["put", "session", "x", "--ttl", "soon"], 2);
    // memory:// says that nothing outlives the process.
    let output = Kvctl::memory().run(&["put", "k", "v"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("nothing written here is kept"),
        "{output:?}"
    );
    // A compacted `watch --since` has its own exit code (writes through a handle that keeps
    // one change of history trim the older ones).
    let short = format!(
        "sqlite://{}?history=1",
        kv.home.path().join("kv/kv.db").display()
    );
    kv.expect(&["--store", &short, "put", "session", "y"], 0);
    kv.expect(&["--store", &short, "put", "session", "z"], 0);
    let output = kv.run(&[
        "watch", "session", "--since", "0", "--count", "1", "-o", "json",
    ]);
    assert_status(&output, 6, &["watch", "--since", "0"]);
    let error = json_lines(std::str::from_utf8(&output.stdout).unwrap());
    assert_eq!(error.last().unwrap()["kind"], "compacted");
    // Shell completions.
    let bash = kv.expect(&["completions", "bash"], 0);
    assert!(bash.contains("kvctl") && bash.contains("watch"), "{bash}");
}

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
fn lock_with_trap(kv: &Kvctl, marker: &Path) -> std::process::Child {
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
fn exit_within(
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
fn first_stderr_line(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    line
}

fn wait_for(path: &Path) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let kv = Kvctl::memory();
    for verb in [
        "put", "get", "del", "rm", "ls", "exists", "cas", "watch", "lock",
    ] {
        let help = kv.expect(&[verb, "--help"], 0);
        assert!(
            help.contains("Example"),
            "{verb} --help has no example:\n{help}"
        );
    }
    assert!(kv.expect(&["--help"], 0).contains("Exit codes"));
}

#[test]
fn memory_store_single_invocations() {
    let kv = Kvctl::memory();
    assert_eq!(kv.expect(&["put", "k", "v"], 0), "OK version 1\n");
    kv.expect(&["get", "k"], 1);
    assert_eq!(kv.expect(&["ls", "-r"], 0), "");
    kv.expect(&["exists", "k"], 1);
    kv.expect(&["cas", "k", "v", "--absent"], 0);
    kv.expect(&["cas", "k", "v", "--version", "3"], 1);
    kv.expect(&["del", "k"], 1);
}

/// A store all kvctl processes share: a real server from the test harness, under a fresh root.
fn shared(launcher: &dyn conformance::servers::Launcher) -> Option<Kvctl> {
    use conformance::servers::{Provision, provision};
    match provision(launcher) {
        Provision::Ready(server) => {
            // Redis takes its root as an option (the path is the database number).
            let url = if server.url.starts_with("redis") {
                format!("{}?root={}", server.url, conformance::random_name())
            } else {
                format!("{}/{}", server.url, conformance::random_name())
            };
            Some(Kvctl {
                home: tempfile::tempdir().unwrap(),
                store: Some(Box::leak(url.into_boxed_str())),
            })
        }
        Provision::Skipped(message) => {
            eprintln!("{message}");
            None
        }
    }
}

fn shared_etcd() -> Option<Kvctl> {
    shared(&conformance::servers::EtcdProcess)
}

#[test]
fn watch_prints_an_event_written_by_another_kvctl_process() {
    let Some(kv) = shared_etcd() else { return };
    let watcher = kv
        .command(&["watch", "app/color", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    kv.expect(&["put", "app/color", "blue"], 0);
    let output = watcher.wait_with_output().unwrap();
    assert_status(&output, 0, &["watch"]);
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        printed.starts_with("PUT app/color ") && printed.ends_with(" blue\n"),
        "{printed:?}"
    );
}

#[test]
fn lock_excludes_another_kvctl_process() {
    let Some(kv) = shared_etcd() else { return };
    let marker = kv.home.path().join("first-ran");
    let first = kv
        .command(&[
            "lock",
            "jobs/one",
            "--",
            "sh",
            "-c",
            &format!("touch {}; sleep 2", marker.display()),
        ])
        .spawn()
        .unwrap();
    assert!(wait_for(&marker), "the first holder ran");
    let started = Instant::now();
    kv.expect(&["lock", "jobs/one", "--", "true"], 0);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the second holder must wait for the first"
    );
    let output = first.wait_with_output().unwrap();
    assert_status(&output, 0, &["lock"]);
}

#[test]
fn check_passes_on_memory_and_reports_every_case() {
    let kv = Kvctl::memory();
    let out = kv.expect(&["check", "--only", "keys,cas"], 0);
    assert!(
        out.contains("keys::keys_are_normalized") && out.contains(" ok "),
        "{out}"
    );
    assert!(out.trim_end().ends_with("cases, 0 failed"), "{out}");
    let lines = json_lines(&kv.expect(&["check", "--only", "values", "-o", "json"], 0));
    assert!(
        lines
            .iter()
            .any(|l| l["case"] == "versions_increase" && l["result"] == "ok")
    );
    kv.expect(&["check", "--only", "nothing"], 2);
}

#[test]
fn check_on_etcd_cleans_up_after_itself() {
    let Some(kv) = shared_etcd() else { return };
    let out = kv.expect(&["check", "--only", "keys,tree,locks"], 0);
    assert!(
        out.contains("locks::subtree_lock_excludes_the_subtree"),
        "{out}"
    );
    assert_eq!(
        kv.expect(&["ls", "-r"], 0),
        "",
        "check must leave no keys under the root"
    );
}

#[test]
fn check_passes_on_redis_consul_and_zookeeper_and_cleans_up() {
    use conformance::servers::{ConsulProcess, RedisProcess, ZooKeeperProcess};
    let launchers: [&dyn conformance::servers::Launcher; 3] =
        [&RedisProcess, &ConsulProcess, &ZooKeeperProcess];
    for launcher in launchers {
        let Some(kv) = shared(launcher) else { continue };
        let out = kv.expect(&["check"], 0);
        assert!(out.trim_end().ends_with("cases, 0 failed"), "{out}");
        match kv.store {
            Some(url) if url.starts_with("redis") => {
                // Not even kv-redis's bookkeeping keys stay behind.
                let (address, root) = url
                    .trim_start_matches("redis://")
                    .split_once("?root=")
                    .unwrap();
                let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
                let left =
                    conformance::servers::probe(port, format!("KEYS kv{{{root}*\r\n").as_bytes())
                        .unwrap();
                assert!(left.starts_with("*0"), "keys left on Redis: {left}");
            }
            _ => assert!(out.contains("gated"), "watch history is gated: {out}"),
        }
        assert_eq!(
            kv.expect(&["ls", "-r"], 0),
            "",
            "no keys left under the root"
        );
        assert_eq!(
            kv.expect(&["ls"], 0),
            "",
            "no directories left under the root"
        );
    }
}

#[test]
fn check_against_a_broken_setup_fails_with_a_readable_report() {
    use conformance::servers::{Launcher, RedisProcess};
    if conformance::servers::opted_out("redis", "kvctl check against a broken setup") {
        return;
    }
    // A Redis of its own: the shared one must never want a password, even for a moment
    // (other tests use it meanwhile).
    let server = RedisProcess.start().unwrap();
    let port = server.url.rsplit(':').next().unwrap();
    // A Redis that wants a password we do not give: every case fails, and says why.
    assert!(
        conformance::servers::probe(
            port.parse().unwrap(),
            b"CONFIG SET requirepass kv-check-pw\r\n"
        )
        .is_some_and(|r| r.starts_with("+OK"))
    );
    let kv = Kvctl::memory();
    let output = kv.run(&[
        "--store",
        &format!("redis://127.0.0.1:{port}?timeout=2s"),
        "check",
        "--only",
        "keys",
    ]);
    assert_status(&output, 1, &["check"]);
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        out.contains("FAILED") && out.contains("authentication"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("cases, 5 failed"), "{out}");
}

/// `kvctl bench` on every backend the harness starts, kv and raw: one well-formed line per op,
/// implementation and concurrency, no errors, and nothing left behind.
#[test]
fn bench_runs_kv_and_raw_on_every_backend_and_cleans_up() {
    use conformance::servers::{ConsulProcess, EtcdProcess, RedisProcess, ZooKeeperProcess};
    let launchers: [&dyn conformance::servers::Launcher; 4] = [
        &EtcdProcess,
        &RedisProcess,
        &ConsulProcess,
        &ZooKeeperProcess,
    ];
    let sled = tempfile::tempdir().unwrap();
    let mut stores: Vec<Kvctl> = launchers.into_iter().filter_map(shared).collect();
    stores.push(Kvctl {
        home: tempfile::tempdir().unwrap(),
        store: Some(Box::leak(
            format!("sled://{}", sled.path().join("db").display()).into_boxed_str(),
        )),
    });
    for kv in stores {
        let out = kv.expect(
            &[
                "bench",
                "--impl",
                "both",
                "--ops",
                "put,get,exists,list,delete,cas,watch,lock",
                "--concurrency",
                "1,2",
                "--keys",
                "10",
                "--ops-count",
                "20",
                "--rounds",
                "2",
            ],
            0,
        );
        let lines = json_lines(&out);
        // 6 point ops × 2 implementations × 2 concurrencies, + watch and lock for kv.
        assert_eq!(lines.len(), 6 * 2 * 2 + 2 * 2, "{out}");
        for line in &lines {
            assert_eq!(line["errors"], 0, "{line}");
            assert!(line["n"].as_u64().unwrap() > 0, "{line}");
            assert!(line["ops_per_s"].as_f64().unwrap() > 0.0, "{line}");
            for field in ["impl", "backend", "op", "concurrency", "p50_us", "p99_us"] {
                assert!(!line[field].is_null(), "{field} missing: {line}");
            }
        }
        assert_eq!(
            kv.expect(&["ls", "-r"], 0),
            "",
            "bench leaves no keys behind"
        );
    }
}

/// A put whose answer never came (sent, then the network held it) exits 7, "outcome unknown",
/// and says how to recover: it may have been applied, so it is not reported as "unreachable".
#[test]
fn a_write_whose_answer_never_came_exits_7_outcome_unknown() {
    use conformance::faults::{FaultProxy, server_addr};
    use conformance::servers::{EtcdProcess, Provision, provision};
    let Provision::Ready(server) = provision(&EtcdProcess) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target = server_addr(&server.url).unwrap();
    let proxy = runtime.block_on(FaultProxy::start(target)).unwrap();
    let root = conformance::random_name();
    let through = format!("{}/{root}?timeout=1s", proxy.url(&server.url));
    let direct = format!("{}/{root}", server.url);
    let kv = Kvctl::embedded();
    // The value comes on stdin, read after the store is open: hold the network in between.
    let mut put = kv
        .command(&["--store", &through, "put", "app/color"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    proxy.hold();
    let mut stdin = put.stdin.take().unwrap();
    stdin.write_all(b"blue").unwrap();
    drop(stdin);
    let output = put.wait_with_output().unwrap();
    proxy.heal();
    assert_status(&output, 7, &["put", "through a partition"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("may or may not have been applied") && stderr.contains("--version"),
        "{stderr}"
    );
    // Whether the held put reaches etcd after the heal depends on whether the proxy still holds
    // its bytes once kvctl has gone: either way is possible, which is the point of exit code 7.
    // Whatever happened, the store answers normally again.
    let got = kv.run(&["--store", &direct, "get", "app/color"]);
    assert!(
        matches!(got.status.code(), Some(0 | 1)),
        "the store answers after the heal: {got:?}"
    );
    drop(proxy);
    drop(runtime);
}

/// A store that stops answering mid-bench (a frozen server, with calls allowed to wait 60 s)
/// is reported as hung after `--stall`, with exit code 5, instead of being waited on.
#[test]
fn bench_reports_a_hung_store_instead_of_waiting_forever() {
    use conformance::servers::{Launcher, RedisProcess};
    if conformance::servers::opted_out("redis", "bench watchdog test") {
        return;
    }
    let server = RedisProcess.start().unwrap();
    let store = format!("{}?timeout=60s", server.url);
    let kv = Kvctl::embedded();
    let bench = kv
        .command(&[
            "--store",
            &store,
            "bench",
            "--ops",
            "get",
            "--concurrency",
            "1",
            "--duration",
            "30s",
            "--rounds",
            "1",
            "--stall",
            "2s",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    server.pause().unwrap();
    let paused = Instant::now();
    let output = bench.wait_with_output().unwrap();
    let took = paused.elapsed();
    server.resume().unwrap();
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the store hung"), "{stderr}");
    let lines = json_lines(std::str::from_utf8(&output.stdout).unwrap());
    assert_eq!(lines.last().unwrap()["kind"], "hung");
    assert!(took < Duration::from_secs(10), "reported after {took:?}");
}

/// `kvctl --store A export app | kvctl --store B import`, through a real pipe between two
/// processes: the embedded default to etcd and back, byte for byte; a bad line exits 2 naming it.
#[test]
fn export_piped_into_import_moves_a_tree_between_stores() {
    let Some(etcd) = shared_etcd() else { return };
    let embedded = Kvctl::embedded();
    embedded.expect(&["put", "app/color", "blue"], 0);
    embedded.expect(&["put", "app/deep/er", "x"], 0);
    let binary = embedded.run_with_stdin(&["put", "app/bin"], b"\xff\x00\x01");
    assert_status(&binary, 0, &["put"]);
    embedded.expect(&["put", "other", "not exported"], 0);
    let mut export = embedded
        .command(&["export", "app"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let import = etcd
        .command(&["import"])
        .stdin(export.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(export.wait().unwrap().success());
    assert_status(&import, 0, &["import"]);
    assert!(
        String::from_utf8_lossy(&import.stderr).contains("imported 3 keys, 8 bytes"),
        "{:?}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert_eq!(
        etcd.expect(&["export"], 0),
        embedded.expect(&["export", "app"], 0)
    );
    let got = etcd.run(&["get", "app/bin"]);
    assert_status(&got, 0, &["get"]);
    assert_eq!(got.stdout, b"\xff\x00\x01");

    let bad = etcd.run_with_stdin(
        &["import"],
        b"{\"key\":\"new/a\",\"value\":\"1\"}\n{\"key\":\"new//b\"}\n{\"key\":\"new/c\"}\n",
    );
    assert_status(&bad, 2, &["import"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("line 2: invalid key"), "{stderr}");
    etcd.expect(&["exists", "new/a"], 0);
    etcd.expect(&["exists", "new/c"], 1);
    etcd.expect(&["rm", "-r", "/", "--force"], 0);
}

/// `RUST_LOG=kv=debug` shows a span per store call (backend, op, key), never the value.
#[test]
fn rust_log_shows_a_span_per_call_without_values() {
    let kv = Kvctl::embedded();
    kv.expect(&["put", "app/token", "secret-value-123"], 0);
    let output = kv
        .command(&["get", "app/token"])
        .env("RUST_LOG", "kv=debug")
        .output()
        .unwrap();
    assert_status(&output, 0, &["get"]);
    let log = String::from_utf8(output.stderr).unwrap();
    assert!(
        log.contains(r#"kv{backend="sqlite" op="get" key="app/token"}"#),
        "{log}"
    );
    assert!(!log.contains("secret-value-123"), "{log}");
    // Without RUST_LOG, nothing.
    let quiet = kv
        .command(&["get", "app/token"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(quiet.stderr.is_empty(), "{quiet:?}");
}

/// A kvctl process that is continued and killed if a test ends (or fails) while it runs, so
/// that a stopped one is never left behind.
struct Reaped(std::process::Child);

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
fn epoch_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The number a file holds (a `date +%s%N` a command wrote), once it holds one.
fn read_nanos(path: &Path) -> Option<u128> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A shell command that writes the time into `mark` every 50 ms, forever.
fn marking(mark: &Path) -> String {
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
fn a_frozen_holder_stops_its_command(
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
fn contender(kv: &Kvctl, args: &[&str], got: &Path) -> u128 {
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
fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.chars().next().unwrap()
}

/// Starts `kvctl args`, whose command writes the time into `mark`; returns once it holds
/// what it asked for and the command has written.
fn holding(kv: &Kvctl, args: &[&str], mark: &Path) -> (Reaped, Pid) {
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
fn mark_advances(mark: &Path) -> bool {
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
