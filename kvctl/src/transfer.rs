//! `export` and `import`: a store's keys as JSON lines, so data moves between any two stores
//! (`kvctl --store consul://… export app | kvctl --store etcd://… import`).
//!
//! One line per key: `{"key":"app/color","value":"blue","encoding":"utf8"}`, or
//! `"encoding":"base64"` for bytes that are not UTF-8 — the same fields as `ls -r -o json`, so
//! its output imports too. Lines are in key order and carry no version, so two stores with the
//! same data export the same bytes. Import also takes `ttl_ms` (a TTL to write the key with).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kv::{Key, PutOptions, Store};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::output::{Failure, Printer, code, value_fields};

/// Puts in flight at once during an import.
const IN_FLIGHT: usize = 32;
/// How often the progress line is redrawn on a terminal.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What an export or import moved.
struct Tally {
    keys: u64,
    bytes: u64,
    started: Instant,
    shown: Instant,
    progress: bool,
}

impl Tally {
    fn new() -> Tally {
        let now = Instant::now();
        Tally {
            keys: 0,
            bytes: 0,
            started: now,
            shown: now,
            progress: std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, verb: &str, bytes: usize) {
        self.keys += 1;
        self.bytes += bytes as u64;
        if self.progress && self.shown.elapsed() >= PROGRESS_EVERY {
            self.shown = Instant::now();
            eprint!("\r{verb} {} keys, {} bytes…", self.keys, self.bytes);
        }
    }

    /// Prints what moved: on stderr, or with `-o json` on stdout when stdout is free
    /// (`on_stdout`: not for export, whose stdout is the data).
    fn summary(&self, out: &Printer, verb: &str, on_stdout: bool) {
        if self.progress {
            eprint!("\r\x1b[K");
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let line = format!(
            "{verb} {} keys, {} bytes in {seconds:.2} s",
            self.keys, self.bytes
        );
        if out.json() && on_stdout {
            out.emit(
                json!({verb: self.keys, "bytes": self.bytes, "seconds": seconds}),
                || line.clone(),
            );
        } else {
            eprintln!("kvctl: {line}");
        }
    }
}

/// Writes every key the prefix covers to stdout as JSON lines, in key order.
pub async fn export(store: &dyn Store, out: &Printer, prefix: &str) -> Result<u8, Failure> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let tally = export_to(store, prefix, &mut stdout).await?;
    stdout.flush().map_err(broken_pipe)?;
    tally.summary(out, "exported", false);
    Ok(0)
}

/// Writes every key the prefix covers to `sink` as JSON lines, in key order.
async fn export_to(
    store: &dyn Store,
    prefix: &str,
    sink: &mut impl Write,
) -> Result<Tally, Failure> {
    let pairs = store.list(prefix).await?;
    let mut tally = Tally::new();
    for pair in &pairs {
        let mut line = json!({"key": pair.key.as_str()});
        if let serde_json::Value::Object(map) = &mut line {
            map.extend(value_fields(&pair.value));
        }
        writeln!(sink, "{line}").map_err(broken_pipe)?;
        tally.add("exported", pair.value.len());
    }
    Ok(tally)
}

fn broken_pipe(e: std::io::Error) -> Failure {
    Failure::new(code::OTHER, format!("cannot write to stdout: {e}"))
}

/// A line checked and decoded, ready to put.
struct Record {
    key: Key,
    value: Vec<u8>,
    options: PutOptions,
}

/// Parses and checks line `number` against the store's limits: everything a put could refuse
/// for the input itself is found before anything is sent.
fn record(store: &dyn Store, number: u64, text: &str) -> Result<Record, Failure> {
    let bad = |what: String| Failure::new(code::USAGE, format!("line {number}: {what}"));
    let expected = r#"expected {"key": "...", "value": "...", "encoding": "utf8"|"base64"}"#;
    let line: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e}); {expected}")))?;
    let field = |name: &str| line.get(name).filter(|v| !v.is_null());
    let text_field = |name: &str| match field(name) {
        None => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(bad(format!("\"{name}\" is not a string; {expected}"))),
    };
    let key = text_field("key")?.ok_or_else(|| bad(format!("no \"key\"; {expected}")))?;
    let key = Key::parse(key).map_err(|e| bad(e.to_string()))?;
    let value = text_field("value")?.unwrap_or("");
    let value = match text_field("encoding")? {
        None | Some("utf8") => value.as_bytes().to_vec(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| bad(format!("the value is not base64: {e}")))?,
        Some(other) => return Err(bad(format!("unknown encoding {other:?} (utf8 or base64)"))),
    };
    let ttl_ms = match field("ttl_ms") {
        None => None,
        Some(ms) => Some(
            ms.as_u64()
                .ok_or_else(|| bad("\"ttl_ms\" is not a whole number of milliseconds".into()))?,
        ),
    };
    let capabilities = store.capabilities();
    capabilities
        .check_value(value.len())
        .map_err(|e| bad(e.to_string()))?;
    let mut options = PutOptions::default();
    if let Some(ms) = ttl_ms {
        let ttl = capabilities
            .check_ttl(Duration::from_millis(ms))
            .map_err(|e| bad(e.to_string()))?;
        options = options.ttl(ttl);
    }
    Ok(Record {
        key,
        value,
        options,
    })
}

/// Puts every JSON line of stdin, up to [`IN_FLIGHT`] at once. Running it again gives the
/// same data (each line is a plain put). A bad line stops the import before anything from it
/// on is sent; the error names the line and how many keys were written before it.
pub async fn import(store: &dyn Store, out: &Printer) -> Result<u8, Failure> {
    let tally = import_from(store, tokio::io::BufReader::new(tokio::io::stdin())).await?;
    tally.summary(out, "imported", true);
    Ok(0)
}

/// Puts every JSON line of `source`; see [`import`].
async fn import_from(
    store: &dyn Store,
    source: impl tokio::io::AsyncBufRead + Unpin,
) -> Result<Tally, Failure> {
    let mut lines = source.lines();
    let mut tally = Tally::new();
    let mut in_flight = FuturesUnordered::new();
    let mut number = 0u64;
    // The first failure, by line number.
    let mut failed: Option<(u64, Failure, bool)> = None;
    while failed.is_none() {
        let text = match lines.next_line().await {
            Ok(Some(text)) => text,
            Ok(None) => break,
            Err(e) => {
                let failure = Failure::new(
                    code::USAGE,
                    format!("line {}: cannot read stdin: {e}", number + 1),
                );
                keep(&mut failed, number + 1, failure, false);
                break;
            }
        };
        number += 1;
        if text.trim().is_empty() {
            continue;
        }
        let record = match record(store, number, &text) {
            Ok(record) => record,
            Err(failure) => {
                keep(&mut failed, number, failure, false);
                break;
            }
        };
        let line = number;
        in_flight.push(async move {
            let size = record.value.len();
            let result = store
                .put(record.key.as_str(), &record.value, record.options)
                .await;
            (line, size, result)
        });
        while in_flight.len() >= IN_FLIGHT {
            if let Some((line, size, result)) = in_flight.next().await {
                settle(&mut tally, &mut failed, line, size, result);
            }
        }
    }
    while let Some((line, size, result)) = in_flight.next().await {
        settle(&mut tally, &mut failed, line, size, result);
    }
    if let Some((line, mut failure, sent_later)) = failed {
        let after = if sent_later {
            "later lines already in flight may have been written too"
        } else {
            "nothing from it on was sent"
        };
        failure.message = format!(
            "{}; {} key(s) written, every line before line {line} among them; {after} (import is idempotent: fix the line and run it again)",
            failure.message, tally.keys
        );
        return Err(failure);
    }
    Ok(tally)
}

/// Counts a finished put, or keeps its failure.
fn settle(
    tally: &mut Tally,
    failed: &mut Option<(u64, Failure, bool)>,
    line: u64,
    size: usize,
    result: kv::Result<u64>,
) {
    match result {
        Ok(_) => tally.add("imported", size),
        Err(error) => {
            let mut failure = Failure::write(error);
            failure.message = format!("line {line}: {}", failure.message);
            keep(failed, line, failure, true);
        }
    }
}

/// Keeps `failure` if it is the first by line number.
/// `sent_later`: lines after it may have been sent (a put failed; others were in flight).
fn keep(failed: &mut Option<(u64, Failure, bool)>, line: u64, failure: Failure, sent_later: bool) {
    if failed.as_ref().is_none_or(|(first, ..)| line < *first) {
        *failed = Some((line, failure, sent_later));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed step panics with its context

    use conformance::servers::{
        ConsulProcess, EtcdProcess, Launcher, Provision, RedisProcess, ZooKeeperProcess, provision,
    };

    use super::*;

    fn server(launcher: &dyn Launcher) -> String {
        match provision(launcher) {
            Provision::Ready(server) => server.url.clone(),
            Provision::Skipped(message) => panic!("{message}"),
        }
    }

    /// 10,000 keys over three levels, values of every kind: empty, text with newlines and
    /// quotes, invalid UTF-8 and NUL bytes.
    fn tree() -> Vec<(String, Vec<u8>)> {
        let mut rng = fastrand::Rng::with_seed(7);
        (0..10_000)
            .map(|i| {
                let key = format!("t/{}/{}/k{i}", i % 7, i % 61);
                let value = match i % 4 {
                    0 => Vec::new(),
                    1 => format!("text \"{i}\"\nline ✓").into_bytes(),
                    _ => (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect(),
                };
                (key, value)
            })
            .collect()
    }

    async fn export_bytes(store: &dyn Store) -> Vec<u8> {
        let mut sink = Vec::new();
        export_to(store, "t", &mut sink).await.unwrap();
        sink
    }

    /// memory → the embedded default → etcd → Redis → Consul → ZooKeeper → memory, each hop
    /// an export piped into an import: every export is the same bytes, and the last store holds
    /// exactly the tree.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_round_trips_between_every_backend() {
        let dir = tempfile::tempdir().unwrap();
        let name = conformance::random_name();
        let ring = [
            format!("memory://{name}"),
            format!("sqlite://{}", dir.path().join("kv.db").display()),
            format!("{}/{name}", server(&EtcdProcess)),
            format!("{}?root={name}", server(&RedisProcess)),
            format!("{}/{name}", server(&ConsulProcess)),
            format!("{}/{name}", server(&ZooKeeperProcess)),
            format!("memory://{name}-back"),
        ];
        let tree = tree();
        let first = kv::open(&ring[0]).await.unwrap();
        for (key, value) in &tree {
            first.put(key, value, PutOptions::default()).await.unwrap();
        }
        let expected = export_bytes(first.as_ref()).await;
        assert_eq!(expected.iter().filter(|b| **b == b'\n').count(), 10_000);
        let mut stores = vec![first];
        for url in &ring[1..] {
            let store = kv::open(url).await.unwrap();
            let started = Instant::now();
            let tally = import_from(store.as_ref(), &expected[..]).await.unwrap();
            assert_eq!(tally.keys, 10_000, "{url}");
            let imported = started.elapsed();
            let exported = export_bytes(store.as_ref()).await;
            eprintln!(
                "{url}: import {imported:?}, export {:?}",
                started.elapsed() - imported
            );
            assert!(exported == expected, "{url}: the export differs");
            stores.push(store);
        }
        let last = stores.last().unwrap();
        let mut pairs = last.list("t").await.unwrap().into_iter();
        let mut sorted = tree.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, value) in sorted {
            let pair = pairs.next().unwrap();
            assert_eq!(
                (pair.key.as_str(), &pair.value[..]),
                (key.as_str(), &value[..])
            );
        }
        for (store, url) in stores.iter().zip(&ring) {
            let removed = store.delete_tree("").await;
            assert_eq!(removed.as_ref().ok(), Some(&10_000), "{url}: {removed:?}");
        }
    }

    /// A bad line stops the import there: the lines before it are written, nothing after it.
    #[tokio::test]
    async fn a_bad_line_names_itself_and_nothing_after_it_is_written() {
        let store = kv::open("memory://").await.unwrap();
        let input = b"{\"key\":\"a\",\"value\":\"1\"}\n\n{\"key\":\"b\",\"value\":\"@@\",\"encoding\":\"base64\"}\n{\"key\":\"c\",\"value\":\"3\"}\n";
        let error = import_from(store.as_ref(), &input[..]).await.err().unwrap();
        assert_eq!(error.code, code::USAGE);
        assert!(
            error.message.starts_with("line 3: the value is not base64"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("1 key(s) written"),
            "{}",
            error.message
        );
        assert!(store.exists("a").await.unwrap());
        assert!(!store.exists("c").await.unwrap());
        for (line, why) in [
            ("{\"value\":\"1\"}", "no \"key\""),
            ("{\"key\":\"a//b\"}", "invalid key"),
            ("{\"key\":\"a\",\"encoding\":\"hex\"}", "unknown encoding"),
            ("{\"key\":\"a\",\"ttl_ms\":0}", "ttl"),
            ("{\"key\":7}", "not a string"),
        ] {
            let error = import_from(store.as_ref(), line.as_bytes())
                .await
                .err()
                .unwrap();
            assert!(error.message.starts_with("line 1: "), "{}", error.message);
            assert!(
                error.message.to_lowercase().contains(why),
                "{why}: {}",
                error.message
            );
        }
        // `ls -r -o json` lines import too (their version is ignored), TTLs included.
        let line =
            b"{\"key\":\"d\",\"version\":9,\"value\":\"x\",\"encoding\":\"utf8\",\"ttl_ms\":60000}";
        import_from(store.as_ref(), &line[..]).await.unwrap();
        assert_eq!(&store.get("d").await.unwrap().unwrap().value[..], b"x");
    }
}
