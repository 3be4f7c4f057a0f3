//! Against real servers: watches and locks across processes, `check`, `bench`, unknown
//! outcomes, export/import, tracing.

use super::*;

/// A store all kvctl processes share: a real server from the test harness, under a fresh root.
pub(crate) fn shared(launcher: &dyn conformance::servers::Launcher) -> Option<Kvctl> {
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

pub(crate) fn shared_etcd() -> Option<Kvctl> {
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
