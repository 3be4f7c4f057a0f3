//! The embedded default and single invocations: verbs, JSON, exit codes, a store other
//! processes hold, leases and elections across kvctl processes, help.

use super::*;

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
