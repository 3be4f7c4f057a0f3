//! `kvctl`: what `etcdctl`, `consul kv` and `zkCli` are to their servers, for every kv store.

mod bench;
mod check;
mod cli;
mod lock;
mod output;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use futures::StreamExt;
use kv::{Precondition, PutOptions, Store, WatchOptions};
use serde_json::json;

use crate::cli::{CasArgs, Cli, Command, Output, PutArgs, WatchArgs};
use crate::output::{Failure, Printer, code, pair_json};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A benchmark spreads its tasks over every core; everything else needs one thread.
    let mut builder = if matches!(cli.command, Command::Bench(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            Failure::new(code::OTHER, format!("cannot start the async runtime: {e}")).print();
            return ExitCode::from(code::OTHER as u8);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            failure.print();
            ExitCode::from(u8::try_from(failure.code).unwrap_or(5))
        }
    }
}

/// Runs one command; `Ok` carries the exit status.
async fn run(cli: Cli) -> Result<u8, Failure> {
    let url = match cli.store {
        Some(url) => url,
        None => default_store()?,
    };
    if let Command::Bench(args) = &cli.command {
        let printer = Printer::new(cli.output.unwrap_or(Output::Json));
        return bench::run(&url, args, &printer).await;
    }
    let printer = Printer::new(cli.output.unwrap_or(Output::Text));
    if let Command::Check { only } = &cli.command {
        return check::run(&url, only, &printer).await;
    }
    let store = kv::open(&url).await?;
    let status = execute(cli.command, store.as_ref(), &printer).await;
    // Flush what an embedded store buffered, whatever the outcome.
    let closed = store.close().await;
    let status = status?;
    closed?;
    Ok(status)
}

/// The embedded sled store in the user's data directory.
fn default_store() -> Result<String, Failure> {
    let dir: PathBuf = dirs::data_dir()
        .ok_or_else(|| {
            Failure::new(
                code::USAGE,
                "no data directory is known for this user; pass --store URL or set KV_STORE",
            )
        })?
        .join("kv")
        .join("default");
    Ok(format!("sled://{}", dir.display()))
}

async fn execute(command: Command, store: &dyn Store, out: &Printer) -> Result<u8, Failure> {
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
        } => delete(store, out, &key).await,
        Command::Rm {
            key,
            recursive: true,
        } => {
            let deleted = store.delete_tree(&key).await?;
            out.emit(json!({"prefix": key, "deleted": deleted}), || {
                format!("deleted {deleted} keys")
            });
            Ok(0)
        }
        Command::Ls {
            prefix,
            recursive: true,
        } => {
            for pair in store.list(&prefix).await? {
                out.emit(pair_json(&pair), || pair.key.to_string());
            }
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
        Command::Watch(args) => watch(store, out, args).await,
        Command::Lock(args) => lock::run(store, args).await,
        // Handled in `run`, before a store is opened: check opens its own.
        Command::Check { .. } | Command::Bench(_) => Err(Failure::new(
            code::OTHER,
            "check and bench do not run on an open store",
        )),
    }
}

fn not_found(key: &str) -> Failure {
    Failure::new(code::NOT_FOUND, format!("{key}: not found"))
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
    let options = args
        .ttl
        .map_or_else(PutOptions::default, |ttl| PutOptions::default().ttl(ttl));
    let version = store.put(&args.key, &value, options).await?;
    out.emit(json!({"key": args.key, "version": version}), || {
        format!("OK version {version}")
    });
    Ok(0)
}

async fn delete(store: &dyn Store, out: &Printer, key: &str) -> Result<u8, Failure> {
    if !store.delete(key).await? {
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
        .await?;
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
