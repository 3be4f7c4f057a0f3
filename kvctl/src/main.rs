//! `kvctl`: what `etcdctl`, `consul kv` and `zkCli` are to their servers, for every kv store.

mod bench;
mod check;
mod cli;
mod coord;
mod lock;
mod output;
mod transfer;
mod txn;
mod watchdog;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use futures::StreamExt;
use kv::{Precondition, PutOptions, Store, StoreUrl, WatchOptions};
use serde_json::json;

use crate::cli::{CasArgs, Cli, Command, Output, PutArgs, WatchArgs};
use crate::output::{Failure, Printer, code};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        // `RUST_LOG=kv=debug`: a line per store call when its span closes (backend, op, key,
        // time), on stderr.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(std::io::stderr)
            .init();
    }
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "kvctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Command::Watchdog { pgid, grace_ms } = cli.command {
        return ExitCode::from(watchdog::run(pgid, Duration::from_millis(grace_ms)));
    }
    let format = cli
        .output
        .unwrap_or(if matches!(cli.command, Command::Bench(_)) {
            Output::Json
        } else {
            Output::Text
        });
    // A benchmark spreads its tasks over every core; everything else needs one thread.
    let mut builder = if matches!(cli.command, Command::Bench(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            Failure::new(code::OTHER, format!("cannot start the async runtime: {e}")).print(format);
            return ExitCode::from(code::OTHER as u8);
        }
    };
    match runtime.block_on(run(cli, format)) {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            failure.print(format);
            ExitCode::from(u8::try_from(failure.code).unwrap_or(5))
        }
    }
}

/// Runs one command; `Ok` carries the exit status.
async fn run(cli: Cli, format: Output) -> Result<u8, Failure> {
    let url = match cli.store {
        Some(url) => url,
        None => default_store()?,
    };
    let printer = Printer::new(format);
    match &cli.command {
        Command::Bench(args) => return bench::run(&url, args, &printer).await,
        Command::Check { only } => return check::run(&url, only, &printer).await,
        _ => {}
    }
    let parsed = StoreUrl::parse(&url)?;
    let driver = kv::driver(&parsed)?;
    if driver.locality() == kv::Locality::Process {
        eprintln!(
            "kvctl: note: {}:// lives only as long as this kvctl process; nothing written here is kept",
            parsed.scheme
        );
    }
    let nothing_there = match driver.local_path(&parsed) {
        Some(path) => !path?.exists(),
        None => false,
    };
    let store = if reads_only(&cli.command) && nothing_there {
        // Nothing was ever written there: answer from an empty store rather than create a
        // file for a read (a mistyped path would otherwise leave one behind).
        kv::open("memory://").await?
    } else {
        kv::open_url(&parsed)
            .await
            .map_err(|e| busy_hint(&driver, e))?
    };
    // A granted lease outlives this kvctl: closing the handle would revoke it.
    let granting = matches!(
        &cli.command,
        Command::Lease(cli::LeaseArgs {
            action: Some(cli::LeaseAction::Grant { .. }),
            ..
        })
    );
    let status = execute(cli.command, &store, &printer).await;
    if granting {
        return status;
    }
    // Flush what an embedded store buffered, whatever the outcome.
    let closed = store.close().await;
    let status = status?;
    closed?;
    Ok(status)
}

/// Verbs that change nothing when the store is empty, so need no store created for them.
fn reads_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Get { .. }
            | Command::Ls { .. }
            | Command::Exists { .. }
            | Command::Del { .. }
            | Command::Rm { .. }
            | Command::Export { .. }
    )
}

/// An embedded store that is busy: say what holds it, not "is a server up?".
fn busy_hint(driver: &kv::Driver, error: kv::Error) -> Failure {
    let failure = Failure::from(error);
    match driver.busy_hint() {
        Some(hint) if failure.code == code::UNREACHABLE => failure.hint(hint),
        _ => failure,
    }
}

/// The embedded SQLite store in the user's data directory. An earlier kvctl kept a sled store
/// beside it: while only that one exists, say where it is and how to keep using it.
fn default_store() -> Result<String, Failure> {
    let dir: PathBuf = dirs::data_dir()
        .ok_or_else(|| {
            Failure::new(
                code::USAGE,
                "no data directory is known for this user; pass --store URL or set KV_STORE",
            )
        })?
        .join("kv");
    let database = dir.join("kv.db");
    let earlier = dir.join("default");
    if earlier.is_dir() && !database.exists() {
        eprintln!(
            "kvctl: note: the default store is now SQLite at {} (several kvctl processes can \
             use it at once); the sled store of an earlier kvctl is still at {} and is not \
             read: use it with --store sled://{}",
            database.display(),
            earlier.display(),
            earlier.display()
        );
    }
    Ok(format!("sqlite://{}", database.display()))
}

async fn execute(command: Command, shared: &Arc<dyn Store>, out: &Printer) -> Result<u8, Failure> {
    let store = shared.as_ref();
    match command {
        Command::Put(args) => put(store, out, args).await,
        Command::Get { key, version } => {
            let pair = store.get(&key).await?.ok_or_else(|| not_found(&key))?;
            if version && !out.json() {
                out.emit(json!({}), || pair.version.to_string());
            } else {
                out.value(&pair);
            }
            Ok(0)
        }
        Command::Del { key } => delete(store, out, &key).await,
        Command::Rm {
            key,
            recursive: false,
            ..
        } => delete(store, out, &key).await,
        Command::Rm {
            key,
            recursive: true,
            force,
        } => {
            if key.trim_matches('/').is_empty() && !force {
                return Err(Failure::new(
                    code::USAGE,
                    "refusing to delete the whole store: `rm -r` of the root needs --force",
                ));
            }
            let deleted = store.delete_tree(&key).await.map_err(Failure::write)?;
            out.emit(json!({"prefix": key, "deleted": deleted}), || {
                format!("deleted {deleted} keys")
            });
            Ok(0)
        }
        Command::Ls {
            prefix,
            recursive: true,
        } => {
            out.pairs(&store.list(&prefix).await?);
            Ok(0)
        }
        Command::Ls {
            prefix,
            recursive: false,
        } => {
            for child in store.list_children(&prefix).await? {
                out.child(&child);
            }
            Ok(0)
        }
        Command::Exists { key } => {
            let exists = store.exists(&key).await?;
            out.emit(json!({"key": key, "exists": exists}), || exists.to_string());
            Ok(if exists { 0 } else { code::NOT_FOUND as u8 })
        }
        Command::Cas(args) => cas(store, out, args).await,
        Command::Txn => txn::run(store, out).await,
        Command::Watch(args) => watch(store, out, args).await,
        Command::Lock(args) => lock::run(store, args).await,
        Command::Lease(args) => coord::lease(store, out, args).await,
        Command::Elect(args) => coord::elect(shared.clone(), out, args).await,
        Command::Export { prefix } => transfer::export(store, out, &prefix).await,
        Command::Import => transfer::import(store, out).await,
        // Handled before a store is opened: check and bench open their own.
        Command::Check { .. }
        | Command::Bench(_)
        | Command::Completions { .. }
        | Command::Watchdog { .. } => Err(Failure::new(
            code::OTHER,
            "check and bench do not run on an open store",
        )),
    }
}

fn not_found(key: &str) -> Failure {
    Failure::new(code::NOT_FOUND, format!("{key}: not found (no such key)"))
}

async fn put(store: &dyn Store, out: &Printer, args: PutArgs) -> Result<u8, Failure> {
    let value = match (args.value, args.file) {
        (Some(value), _) => value.into_bytes(),
        (None, Some(path)) => std::fs::read(&path).map_err(|e| {
            Failure::new(code::USAGE, format!("cannot read {}: {e}", path.display()))
        })?,
        (None, None) => {
            let mut value = Vec::new();
            std::io::stdin().read_to_end(&mut value).map_err(|e| {
                Failure::new(
                    code::USAGE,
                    format!("cannot read the value from stdin: {e}"),
                )
            })?;
            value
        }
    };
    let lease = match &args.lease {
        Some(id) => Some(store.attach_lease(id).await.map_err(coord::lease_failure)?),
        None => None,
    };
    let options = match (args.ttl, &lease) {
        (Some(ttl), _) => PutOptions::default().ttl(ttl),
        (None, Some(lease)) => PutOptions::default().lease(lease),
        (None, None) => PutOptions::default(),
    };
    let version = store
        .put(&args.key, &value, options)
        .await
        .map_err(Failure::write)?;
    out.emit(json!({"key": args.key, "version": version}), || {
        format!("OK version {version}")
    });
    Ok(0)
}

async fn delete(store: &dyn Store, out: &Printer, key: &str) -> Result<u8, Failure> {
    if !store.delete(key).await.map_err(Failure::write)? {
        return Err(not_found(key));
    }
    out.emit(json!({"key": key, "deleted": true}), || "deleted".into());
    Ok(0)
}

async fn cas(store: &dyn Store, out: &Printer, args: CasArgs) -> Result<u8, Failure> {
    let precondition = match args.version {
        Some(version) => Precondition::Version(version),
        None => Precondition::MustNotExist,
    };
    let options = args
        .ttl
        .map_or_else(PutOptions::default, |ttl| PutOptions::default().ttl(ttl));
    let version = store
        .atomic_put(&args.key, args.value.as_bytes(), precondition, options)
        .await
        .map_err(Failure::write)?;
    out.emit(json!({"key": args.key, "version": version}), || {
        format!("OK version {version}")
    });
    Ok(0)
}

async fn watch(store: &dyn Store, out: &Printer, args: WatchArgs) -> Result<u8, Failure> {
    let mut options = WatchOptions::default();
    if let Some(since) = args.since {
        options = options.since(since);
    }
    if args.synced {
        options = options.synced();
    }
    let mut events = if args.tree {
        store.watch_tree(&args.key, options).await?
    } else {
        store.watch(&args.key, options).await?
    };
    let mut seen = 0;
    while args.count.is_none_or(|count| seen < count) {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    out.event(&event);
                    seen += 1;
                }
                Some(Err(error)) => return Err(error.into()),
                None => return Err(Failure::new(code::OTHER, "the watch ended")),
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(0)
}
