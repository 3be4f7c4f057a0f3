//! Several processes on one SQLite store: this test binary runs itself again as child
//! processes (the ignored `child` test, told what to do by `KV_SQLITE_CHILD`), and checks that
//! watches, CAS, locks and durability hold across them.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kv_core::{EventKind, LockOptions, Precondition, PutOptions, Store, WatchOptions};
use kv_sqlite::SqliteStore;

/// Starts this test binary as a child process running `job` on the store at `url`.
fn spawn_child(job: &str, url: &str, arg: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KV_SQLITE_CHILD", job)
        .env("KV_SQLITE_URL", url)
        .env("KV_SQLITE_ARG", arg.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The lines a child printed, until it exits; panics if it failed.
fn lines_of(mut child: Child) -> Vec<String> {
    let lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(std::result::Result::ok)
        // The harness may have started the line (`test child ... `).
        .filter_map(|line| {
            line.find("kv: ")
                .map(|at| line[at + "kv: ".len()..].to_owned())
        })
        .collect();
    assert!(child.wait().unwrap().success(), "a child process failed");
    lines
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "kv: {line}").unwrap();
    out.flush().unwrap();
}

/// The child's side; ignored in normal runs (it needs `KV_SQLITE_CHILD`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in child processes by the other tests of this file"]
async fn child() {
    let job = std::env::var("KV_SQLITE_CHILD").unwrap();
    let url = std::env::var("KV_SQLITE_URL").unwrap();
    let arg: u64 = std::env::var("KV_SQLITE_ARG").unwrap().parse().unwrap();
    let store = SqliteStore::open(&url).await.unwrap();
    match job.as_str() {
        // `arg` puts of `cross/k`, each reported with the time it was acknowledged.
        "put" => {
            for i in 0..arg {
                store
                    .put("cross/k", i.to_string().as_bytes(), PutOptions::default())
                    .await
                    .unwrap();
                say(format!("put {i} {}", now_us()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // `arg` CAS increments of `n`.
        "cas" => {
            for _ in 0..arg {
                loop {
                    let current = store.get("n").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&current.value)
                        .unwrap()
                        .parse()
                        .unwrap();
                    let next = (n + 1).to_string();
                    match store
                        .atomic_put(
                            "n",
                            next.as_bytes(),
                            Precondition::Version(current.version),
                            PutOptions::default(),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(kv_core::Error::Conflict { .. }) => {}
                        Err(e) => panic!("cas: {e}"),
                    }
                }
            }
            say("cas done".to_owned());
        }
        // Takes the lock `l` `arg` times, holding it 30 ms each time, reporting each hold.
        "lock" => {
            let lock = store
                .new_lock("l", LockOptions::default().ttl(Duration::from_secs(5)))
                .await
                .unwrap();
            for _ in 0..arg {
                let guard = lock.acquire().await.unwrap();
                let from = now_us();
                tokio::time::sleep(Duration::from_millis(30)).await;
                let to = now_us();
                let token = guard.fencing_token();
                guard.release().await.unwrap();
                say(format!("held {from} {to} {token}"));
            }
        }
        // Puts `ttl/k` with a TTL of `arg` ms and exits at once.
        "ttl" => {
            store
                .put(
                    "ttl/k",
                    b"v",
                    PutOptions::default().ttl(Duration::from_millis(arg)),
                )
                .await
                .unwrap();
            say("put".to_owned());
        }
        // Writes `load/<i>` until killed, reporting each acknowledged write.
        "load" => {
            for i in 0.. {
                store
                    .put(&format!("load/{i}"), b"v", PutOptions::default())
                    .await
                    .unwrap();
                say(format!("ack {i}"));
            }
        }
        other => panic!("unknown job {other}"),
    }
}

fn store_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}/kv.db", dir.path().display())
}

/// A watch in this process sees every put another process makes, promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_puts_from_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(&dir);
    let store = SqliteStore::open(&url).await.unwrap();
    let mut watch = store
        .watch_tree("cross", WatchOptions::default())
        .await
        .unwrap();
    let puts = 50;
    let writer = spawn_child("put", &url, puts);
    let mut seen = Vec::new();
    while seen.len() < usize::try_from(puts).unwrap() {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(event.kind, EventKind::Put);
        seen.push((now_us(), String::from_utf8(event.value.to_vec()).unwrap()));
    }
    let acknowledged = tokio::task::spawn_blocking(move || lines_of(writer))
        .await
        .unwrap();
    let mut latencies: Vec<u128> = acknowledged
        .iter()
        .zip(&seen)
        .map(|(line, (received, value))| {
            let mut parts = line.split(' ').skip(1);
            assert_eq!(parts.next(), Some(value.as_str()), "every put, in order");
            let acked: u128 = parts.next().unwrap().parse().unwrap();
            received.saturating_sub(acked)
        })
        .collect();
    latencies.sort_unstable();
    eprintln!(
        "sqlite: a put in another process reached this process's watch in p50 {} µs, max {} µs \
         (after the writer's acknowledgement; poll=10ms)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

/// Four processes increment one counter with CAS: no increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cas_counter_from_four_processes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(&dir);
    let store = SqliteStore::open(&url).await.unwrap();
    store.put("n", b"0", PutOptions::default()).await.unwrap();
    let each = 100;
    let started = Instant::now();
    let children: Vec<Child> = (0..4).map(|_| spawn_child("cas", &url, each)).collect();
    tokio::task::spawn_blocking(move || {
        for child in children {
            lines_of(child);
        }
    })
    .await
    .unwrap();
    let n = store.get("n").await.unwrap().unwrap();
    assert_eq!(
        n.value,
        (4 * each).to_string().as_bytes(),
        "no increment lost"
    );
    eprintln!(
        "sqlite: 4 processes x {each} CAS increments in {:?}",
        started.elapsed()
    );
}

/// Two processes take one lock in turn: their holds never overlap, and fencing tokens grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_excludes_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(&dir);
    SqliteStore::open(&url).await.unwrap();
    let children: Vec<Child> = (0..2).map(|_| spawn_child("lock", &url, 10)).collect();
    let lines = tokio::task::spawn_blocking(move || {
        children.into_iter().flat_map(lines_of).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut holds: Vec<(u128, u128, u64)> = lines
        .iter()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            (
                parts[1].parse().unwrap(),
                parts[2].parse().unwrap(),
                parts[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(holds.len(), 20);
    holds.sort_unstable();
    for pair in holds.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two processes held the lock at once: {pair:?}"
        );
        assert!(pair[0].2 < pair[1].2, "fencing tokens grow: {pair:?}");
    }
}

/// A writer process killed with SIGKILL in the middle of a load loses no write it had
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(&dir);
    SqliteStore::open(&url).await.unwrap();
    let mut writer = spawn_child("load", &url, 0);
    let stdout = writer.stdout.take().unwrap();
    let acked = tokio::task::spawn_blocking(move || {
        let mut last = None;
        let started = Instant::now();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(at) = line.find("kv: ack ") {
                last = Some(line[at + "kv: ack ".len()..].parse::<u64>().unwrap());
            }
            if started.elapsed() > Duration::from_millis(1500) {
                break;
            }
        }
        writer.kill().unwrap(); // SIGKILL, mid-load
        writer.wait().unwrap();
        last.expect("the writer acknowledged writes")
    })
    .await
    .unwrap();
    let store = SqliteStore::open(&url).await.unwrap();
    let kept = store.list("load").await.unwrap();
    assert!(
        kept.len() as u64 > acked,
        "acknowledged up to load/{acked}, but only {} keys are there",
        kept.len()
    );
    for i in 0..=acked {
        assert!(
            store.exists(&format!("load/{i}")).await.unwrap(),
            "load/{i} was acknowledged and is gone"
        );
    }
    eprintln!(
        "sqlite: a writer killed with SIGKILL after {} acknowledged puts: all kept ({} keys)",
        acked + 1,
        kept.len()
    );
}

/// A TTL written by a process that has exited still expires with a Delete event: whichever
/// process has the store open reaps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_from_a_process_that_is_gone_expires_with_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(&dir);
    let store = SqliteStore::open(&url).await.unwrap();
    let mut watch = store
        .watch_tree("ttl", WatchOptions::default())
        .await
        .unwrap();
    let writer = spawn_child("ttl", &url, 300);
    tokio::task::spawn_blocking(move || lines_of(writer))
        .await
        .unwrap();
    let started = Instant::now();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        kinds.push(event.kind);
    }
    assert_eq!(kinds, [EventKind::Put, EventKind::Delete]);
    assert!(!store.exists("ttl/k").await.unwrap());
    eprintln!(
        "sqlite: a 300 ms TTL from a process that exited: Delete {:?} after the writer was gone",
        started.elapsed()
    );
}
