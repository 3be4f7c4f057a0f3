//! The command line: every verb, its options and its `--help` example.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kvctl: one set of verbs for every kv store — embedded SQLite or sled, memory, etcd, Consul,
/// ZooKeeper, Redis.
///
/// Without --store or KV_STORE, kvctl uses an embedded SQLite store in your data directory
/// (~/.local/share/kv/kv.db on Linux), so it works on a fresh machine with no server, and
/// several kvctl processes (a watch, a lock, puts) can use it at once.
///
/// Exit codes: 0 ok, 1 not found or precondition failed, 2 usage or invalid input, 3 store
/// unreachable, busy or authentication failed, 4 lock lost, 5 any other error, 6 watch history
/// compacted (`watch --since` too old), 7 a write timed out: it may or may not have been applied.
#[derive(Debug, Parser)]
#[command(name = "kvctl", version, propagate_version = false)]
pub struct Cli {
    /// The store URL, e.g. sqlite:///var/lib/kv/kv.db, memory://, etcd://10.0.0.1:2379/app.
    #[arg(
        long,
        global = true,
        env = "KV_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,

    /// Output format: text for people, json for scripts (one object per line). Default: text
    /// (json for `bench`).
    #[arg(long, short = 'o', global = true, value_enum)]
    pub output: Option<Output>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable.
    Text,
    /// One JSON object per line; values as UTF-8 where they are, else base64.
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a value.
    #[command(
        after_help = "Examples:\n  kvctl put app/color blue\n  kvctl put app/session token --ttl 30s\n  kvctl put app/cert --file cert.pem\n  echo -n data | kvctl put app/blob"
    )]
    Put(PutArgs),

    /// Read a value (raw bytes on stdout), or its version.
    #[command(
        after_help = "Examples:\n  kvctl get app/color\n  kvctl get app/color --version\n  kvctl get app/color -o json"
    )]
    Get {
        /// The key.
        key: String,
        /// Print the version instead of the value.
        #[arg(long)]
        version: bool,
    },

    /// Delete one key (not the keys below it). Exit code 1 if it did not exist.
    #[command(alias = "delete", after_help = "Example:\n  kvctl del app/color")]
    Del {
        /// The key.
        key: String,
    },

    /// Delete a key, or with -r a whole prefix (the prefix key and everything below it).
    #[command(
        after_help = "Examples:\n  kvctl rm app/color\n  kvctl rm -r app/config\n  kvctl rm -r / --force    # the whole store"
    )]
    Rm {
        /// The key or prefix.
        key: String,
        /// Delete everything below the prefix too.
        #[arg(short, long)]
        recursive: bool,
        /// Required to delete the whole store (`rm -r /` or `rm -r ""`).
        #[arg(long)]
        force: bool,
    },

    /// List the children of a prefix (directories end with /), or with -r every key below it
    /// with its version and value (shortened; binary values as base64).
    #[command(after_help = "Examples:\n  kvctl ls\n  kvctl ls app\n  kvctl ls -r app -o json")]
    Ls {
        /// The prefix; the whole store if omitted.
        #[arg(default_value = "")]
        prefix: String,
        /// Every key below the prefix, with its version and value.
        #[arg(short, long)]
        recursive: bool,
    },

    /// Exit 0 if the key exists, 1 if not.
    #[command(after_help = "Example:\n  kvctl exists app/color && echo present")]
    Exists {
        /// The key.
        key: String,
    },

    /// Compare-and-swap: write only if the key has this version, or does not exist.
    #[command(
        after_help = "Examples:\n  kvctl cas app/color green --version 7\n  kvctl cas app/owner me --absent"
    )]
    Cas(CasArgs),

    /// Apply a transaction read from stdin: conditions on any keys, then puts and deletes, all
    /// or nothing. One line each: `if KEY missing|exists|version N|value TEXT`, `put KEY TEXT`,
    /// `del KEY`. Exit code 1 if a condition failed (nothing changed).
    #[command(
        after_help = "Examples:\n  printf 'if jobs/7/owner missing\nput jobs/7/owner w1\ndel queue/7\n' | kvctl txn\n  kvctl txn -o json < move.txn"
    )]
    Txn,

    /// Print changes to a key (or with --tree, a prefix) as they happen, until Ctrl-C.
    #[command(
        after_help = "Examples:\n  kvctl watch app/color\n  kvctl watch --tree app --since 42\n  kvctl watch --tree app --count 1 -o json"
    )]
    Watch(WatchArgs),

    /// Run the conformance suite against the store, in fresh namespaces under its root, and
    /// print a table. Exit code 1 if any case fails.
    #[command(
        after_help = "Examples:\n  kvctl check --store etcd://10.0.0.1:2379/app\n  kvctl check --store redis://cache:6379 --only watch,locks"
    )]
    Check {
        /// Only these areas (keys, values, tree, cas, txn, ttl, watch, leases, locks, lifecycle) or
        /// cases.
        #[arg(long, value_delimiter = ',', value_name = "AREAS")]
        only: Vec<String>,
    },

    /// Measure operations through kv and through the backend's own client (the baseline), one
    /// JSON line per operation and concurrency (-o text: a table). Cleans up what it wrote.
    #[command(
        after_help = "Examples:\n  kvctl bench --store etcd://127.0.0.1:2379 --impl both\n  kvctl bench --store redis://127.0.0.1:6379 --ops get,put --concurrency 1,16 --duration 5s -o text\n  kvctl bench --store memory:// --ops watch,watch_tree,lock"
    )]
    Bench(BenchArgs),

    /// Run a command while holding a lock; exit with its status.
    ///
    /// The command runs in its own process group with KV_LOCK_KEY and KV_FENCING_TOKEN set.
    /// SIGTERM, SIGINT and SIGHUP to kvctl are forwarded to it; the lock is released once it
    /// has exited. If the lock is lost, the command gets SIGTERM and kvctl exits 4. The command
    /// never outlives the lock, whatever happens to kvctl: a watchdog process (in a group of its
    /// own) stops it at the lock's deadline (last renewal sent + TTL - TTL/10: SIGTERM, SIGKILL
    /// TTL/20 later) when kvctl is stopped, frozen or killed and cannot renew; Ctrl-Z stops the
    /// command with kvctl, and `fg` continues it only if the lock is still held. A frozen
    /// machine freezes the watchdog too: protect what the command writes with
    /// KV_FENCING_TOKEN (docs/SEMANTICS.md, "Processes").
    #[command(
        after_help = "Examples:\n  kvctl lock jobs/backup -- ./backup.sh\n  kvctl lock --subtree --ttl 30s app -- ./migrate.sh --all\n  kvctl lock jobs -- ./job.sh   # writes carry $KV_FENCING_TOKEN (docs/SEMANTICS.md)"
    )]
    Lock(LockArgs),

    /// Put keys bound to a lease and keep it alive while a command runs (or until Ctrl-C or
    /// SIGTERM), then revoke it: the keys go at once, or one TTL after kvctl dies. Exit code
    /// 4 if the lease is lost. Service registration for scripts. Or, as etcdctl does, manage a
    /// lease by its ID across commands: `grant`, `put --lease ID`, `keepalive`, `revoke`.
    #[command(
        after_help = "Examples:\n  kvctl lease services/api/node-1=10.0.0.1:8080 -- ./serve.sh\n  kvctl lease --ttl 5s services/api/node-1=10.0.0.1:8080    # until Ctrl-C\n  id=$(kvctl lease grant --ttl 30s); kvctl put --lease \"$id\" services/api/node-1 10.0.0.1:8080\n  kvctl lease keepalive \"$id\" &    # renews until stopped\n  kvctl lease revoke \"$id\"         # its keys go at once"
    )]
    Lease(LeaseArgs),

    /// Campaign to lead NAME with VALUE and hold the office while a command runs (or until
    /// Ctrl-C or SIGTERM), then resign; or with --observe print the leader as it changes.
    /// Exit code 4 if leadership is lost.
    #[command(
        after_help = "Examples:\n  kvctl elect services/scheduler node-1 -- ./schedule.sh\n  kvctl elect services/scheduler --observe"
    )]
    Elect(ElectArgs),

    /// Write every key below a prefix to stdout as JSON lines (key, value, encoding), in key
    /// order, for `import` into any store. TTLs are not exported.
    #[command(
        after_help = "Examples:\n  kvctl export app > app.jsonl\n  kvctl --store consul://127.0.0.1:8500 export app | kvctl --store etcd://127.0.0.1:2379 import"
    )]
    Export {
        /// The prefix; the whole store if omitted.
        #[arg(default_value = "")]
        prefix: String,
    },

    /// Put every JSON line of stdin (as `export` writes them; `ls -r -o json` output works
    /// too; `ttl_ms` sets a TTL). Running it again gives the same data. A bad line stops the
    /// import before anything from it on is sent, and names its line number.
    #[command(
        after_help = "Examples:\n  kvctl import < app.jsonl\n  echo '{\"key\":\"app/color\",\"value\":\"blue\"}' | kvctl import"
    )]
    Import,

    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  kvctl completions bash > ~/.local/share/bash-completion/completions/kvctl\n  kvctl completions zsh > ~/.zfunc/_kvctl"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Internal: the watchdog `lock`, `lease` and `elect` start beside their command.
    #[command(name = "__watchdog", hide = true)]
    Watchdog {
        /// The command's process group.
        pgid: i32,
        /// Milliseconds from SIGTERM to SIGKILL.
        grace_ms: u64,
    },
}

/// `lease`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LeaseArgs {
    /// Manage a lease by its ID instead.
    #[command(subcommand)]
    pub action: Option<LeaseAction>,
    /// The keys to hold, as KEY=VALUE.
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub keys: Vec<String>,
    /// The lease's TTL: how long the keys outlive a kvctl that died (a bare number is seconds).
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub ttl: Duration,
    /// The command to run while the keys are held, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `lease grant|keepalive|revoke`: a lease by its ID, across kvctl runs.
#[derive(Debug, Subcommand)]
pub enum LeaseAction {
    /// Grant a lease and print its ID. Nothing renews it: it ends (deleting the keys put with
    /// it) one TTL later unless `lease keepalive ID` runs.
    Grant {
        /// The lease's TTL (a bare number is seconds).
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        ttl: Duration,
    },
    /// Renew lease ID until Ctrl-C or SIGTERM (or while a command runs, with KV_LEASE_ID
    /// set); the lease then lives one more TTL. Exit code 4 if it is lost, 1 if it had ended.
    Keepalive {
        /// The lease's ID, as `lease grant` printed it.
        id: String,
        /// The command to run while renewing, after `--`.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Revoke lease ID: the keys put with it are deleted at once. Exit code 1 if it had ended.
    Revoke {
        /// The lease's ID.
        id: String,
    },
}

/// `elect`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["value", "observe"])))]
pub struct ElectArgs {
    /// The election's key.
    pub name: String,
    /// What the leader announces (an address, a node name).
    pub value: Option<String>,
    /// Print the current leader and every change instead of campaigning (`(none)` when there
    /// is no leader).
    #[arg(long)]
    pub observe: bool,
    /// With --observe: stop after this many lines.
    #[arg(long, requires = "observe")]
    pub count: Option<usize>,
    /// The leader's lease TTL: how long a leader that died keeps the office.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub ttl: Duration,
    /// The command to run while leading, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key.
    pub key: String,
    /// The value; read from --file or stdin when omitted.
    #[arg(conflicts_with = "file")]
    pub value: Option<String>,
    /// Read the value from this file.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Expire the key after this long (e.g. 500ms, 30s, 5m; a bare number is seconds).
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<Duration>,
    /// Bind the key to lease ID (from `kvctl lease grant`): it goes when the lease ends.
    #[arg(long, value_name = "ID", conflicts_with = "ttl")]
    pub lease: Option<String>,
}

/// `cas`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("precondition").required(true).args(["version", "absent"])))]
pub struct CasArgs {
    /// The key.
    pub key: String,
    /// The new value.
    pub value: String,
    /// Write only if the key has exactly this version.
    #[arg(long)]
    pub version: Option<u64>,
    /// Write only if the key does not exist.
    #[arg(long)]
    pub absent: bool,
    /// Expire the key after this long (a bare number is seconds).
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<Duration>,
}

/// `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The key, or the prefix with --tree.
    pub key: String,
    /// Watch everything below the prefix.
    #[arg(long)]
    pub tree: bool,
    /// Resume after this version instead of printing the current state first.
    #[arg(long, value_name = "VERSION")]
    pub since: Option<u64>,
    /// Print `SYNCED <key> <version>` once the current state is printed (not with --since).
    #[arg(long, conflicts_with = "since")]
    pub synced: bool,
    /// Exit after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// `lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The lock's key.
    pub key: String,
    /// Lease duration: the lock is freed this long after kvctl stops renewing it (a bare number
    /// is seconds).
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub ttl: Duration,
    /// Lock the key and everything below it.
    #[arg(long)]
    pub subtree: bool,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Operations to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "put,get,exists,list,delete,cas,watch,watch_tree,lock"
    )]
    pub ops: Vec<BenchOp>,
    /// Concurrent tasks sharing the one store handle; each value is a separate run.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub concurrency: Vec<usize>,
    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Keys written before get/exists/delete runs (and the most a delete run removes).
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// How long each run lasts.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub duration: std::time::Duration,
    /// Stop each run after this many operations instead (or at --duration, if sooner).
    #[arg(long, value_name = "N")]
    pub ops_count: Option<u64>,
    /// Split each measurement into this many rounds, alternating which implementation goes
    /// first (with --impl both).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// kv, the backend's raw client, or both, in the same run.
    #[arg(long = "impl", value_enum, default_value_t = BenchImpl::Kv)]
    pub implementation: BenchImpl,
    /// If no operation finishes for this long, report the store as hung and exit 5 (a store
    /// that deadlocks is reported, not waited on forever).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub stall: std::time::Duration,
}

/// An operation `bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum BenchOp {
    /// Write a value.
    Put,
    /// Read a value.
    Get,
    /// Check a key.
    Exists,
    /// List a directory of 100 keys.
    List,
    /// Delete a key.
    Delete,
    /// Compare-and-swap on the version of the task's last write.
    Cas,
    /// Put-to-event latency on one key (kv only).
    Watch,
    /// Put-to-event latency on a directory (kv only).
    WatchTree,
    /// Acquire + release cycles (concurrency = contenders; kv only).
    Lock,
}

impl BenchOp {
    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::Put => "put",
            BenchOp::Get => "get",
            BenchOp::Exists => "exists",
            BenchOp::List => "list",
            BenchOp::Delete => "delete",
            BenchOp::Cas => "cas",
            BenchOp::Watch => "watch",
            BenchOp::WatchTree => "watch_tree",
            BenchOp::Lock => "lock",
        }
    }
}

/// Which implementation `bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchImpl {
    /// Through kv.
    Kv,
    /// Through the backend's own client crate.
    Raw,
    /// Both, in alternating rounds.
    Both,
}

/// A duration as `humantime` reads it (`500ms`, `30s`, `1h 5m`), or a bare number of seconds as
/// etcdctl's and consul's `--ttl` take it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("{e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{e} (write e.g. 30s, 500ms, 5m, or a number of seconds)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999999").is_err());
    }
}
