//! The embedded, persistent backend of **kv**, on [sled](https://docs.rs/sled).
//!
//! It has every capability of the in-memory reference backend — watches with history for
//! `since`, TTLs, locks with leases and fencing tokens, subtree locks — because it *is* that
//! backend made durable: `kv-memory`'s namespace serves every call, and each change is written
//! to sled (one atomic batch) before it is applied. On open, the values are read back from sled.
//!
//! - URLs: `sled:///absolute/path` or `sled://./relative/path`. Options: `sync=true` (fsync
//!   after every change; by default sled flushes every 500 ms and on close/drop),
//!   `history=N` (events kept for `since`, default 10000), `max_value_bytes=N` (default 16 MiB),
//!   `busy_timeout=5s` (how long an open waits while another process holds the store).
//! - Locks and leases are process-local (`Capabilities::locks_process_local`): handles opened on
//!   the same path in one process share data, watches and locks. A second *process* opening the
//!   path waits up to `busy_timeout` for the first to close it, then gets `Error::Unavailable`
//!   saying another process holds it (sled holds a file lock).
//! - Versions and fencing tokens stay monotonic across restarts. Watch history starts at the
//!   open: resuming from a version written before it is `Error::Compacted`.
//! - Keys expire by wall-clock time across restarts: one that expired while nothing ran is
//!   removed (with a Delete event) as soon as the store is opened.
//! - Every value is also held in memory: kv-sled is meant for coordination data and
//!   configuration, not for data sets larger than RAM.
//!
//! The on-disk layout is versioned; see the `journal` module source.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kv_core::Result<()> {
//! use kv_core::{PutOptions, Store};
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("sled://{}", dir.path().display());
//! let store = kv_sled::SledStore::open(&url)?;
//! store.put("app/color", b"blue", PutOptions::default()).await?;
//! store.close().await?;
//! drop(store);
//! let reopened = kv_sled::SledStore::open(&url)?;
//! assert_eq!(reopened.get("app/color").await?.unwrap().value, "blue");
//! # Ok(()) }
//! ```

mod journal;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_core::backend::{Driver, Locality, Opening, scratch_in_temp_dir};
use kv_core::{Capabilities, Error, Result, Store, StoreUrl};
use kv_memory::{DEFAULT_HISTORY, DEFAULT_MAX_VALUE_BYTES, Durable, MemoryStore};

pub use journal::LAYOUT_VERSION;

use crate::journal::{SledJournal, backend};

/// `sled:///path`: this backend as `kv::open` and the tools know it.
pub const DRIVER: Driver = Driver::new("sled", &["sled"], Locality::File, open_driver)
    .with_scratch(|url, leaf| scratch_in_temp_dir(url, leaf, ""))
    .with_local_path(SledStore::path_for)
    .with_leases_bound_to_process()
    .with_busy_hint(
        "the sled store takes one process at a time: stop the other kvctl (watch, lock) or wait longer with --store 'sled:///path?busy_timeout=30s'",
    );

fn open_driver(url: StoreUrl) -> Opening {
    Box::pin(async move { Ok(Arc::new(SledStore::from_url(&url)?) as Arc<dyn Store>) })
}

/// A handle on a sled store. Cheap to share as `Arc<dyn Store>`.
pub struct SledStore {
    inner: MemoryStore,
    path: PathBuf,
}

impl SledStore {
    /// Opens `sled:///absolute/path` or `sled://./relative/path`, creating the store if needed.
    pub fn open(url: &str) -> Result<SledStore> {
        Self::from_url(&StoreUrl::parse(url)?)
    }

    /// Opens a parsed `sled://` URL.
    pub fn from_url(url: &StoreUrl) -> Result<SledStore> {
        SledOptions::from_url(url)?.open()
    }

    fn open_with(path: &Path, settings: &SledOptions) -> Result<SledStore> {
        std::fs::create_dir_all(path).map_err(|e| {
            Error::unavailable(
                format!(
                    "cannot create the sled store directory {}: {e}",
                    path.display()
                ),
                Some(Box::new(e)),
            )
        })?;
        let path = path.canonicalize().map_err(|e| {
            Error::unavailable(
                format!("cannot resolve {}: {e}", path.display()),
                Some(Box::new(e)),
            )
        })?;
        let id = path.to_string_lossy().into_owned();
        let (sync, history, max_value_bytes, busy_timeout) = (
            settings.sync,
            settings.history,
            settings.max_value_bytes,
            settings.busy_timeout,
        );
        let inner = MemoryStore::open_durable(&id, || {
            let db = open_db(&path, sync, busy_timeout)?;
            let journal = SledJournal::new(db, sync);
            let recovered = journal.recover()?;
            let mut capabilities = Capabilities::full("sled", max_value_bytes);
            capabilities.locks_process_local = true;
            Ok(Durable {
                capabilities,
                history,
                journal: Arc::new(journal),
                recovered,
            })
        })?;
        Ok(SledStore { inner, path })
    }

    /// The directory a `sled://` URL names, without opening or creating anything (so a tool
    /// can tell that nothing was ever written there).
    pub fn path_for(url: &StoreUrl) -> Result<PathBuf> {
        path_of(url)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn path_of(url: &StoreUrl) -> Result<PathBuf> {
    if url.username.is_some() || url.password.is_some() {
        return Err(Error::invalid_url("sled:// URLs take no user or password"));
    }
    let path = match url.hosts.as_slice() {
        [] => format!("/{}", url.path),
        [host] if host.port.is_none() => format!("{}/{}", host.host, url.path),
        _ => {
            return Err(Error::invalid_url(
                "expected sled:///absolute/path or sled://./relative/path",
            ));
        }
    };
    if path == "/" {
        return Err(Error::invalid_url(
            "sled:// needs a directory: sled:///absolute/path or sled://./relative/path",
        ));
    }
    Ok(PathBuf::from(path))
}

/// How to open a sled store: its directory, fsync per write, history kept, largest value,
/// how long to wait for another process holding it. Built in code or parsed from a `sled://`
/// URL; [`SledOptions::open`] opens the store.
///
/// ```no_run
/// let store = kv_sled::SledOptions::new("/var/lib/app/kv").sync(true).open()?;
/// # Ok::<(), kv_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SledOptions {
    path: PathBuf,
    sync: bool,
    history: usize,
    max_value_bytes: usize,
    busy_timeout: std::time::Duration,
}

impl SledOptions {
    /// The store in the directory `path` (created if needed), with the defaults.
    pub fn new(path: impl Into<PathBuf>) -> SledOptions {
        SledOptions {
            path: path.into(),
            sync: false,
            history: DEFAULT_HISTORY,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }

    /// The options a `sled://` URL gives (see the crate docs).
    pub fn from_url(url: &StoreUrl) -> Result<SledOptions> {
        if url.scheme != "sled" {
            return Err(Error::invalid_url(format!(
                "kv-sled opens sled:// URLs, not {}://",
                url.scheme
            )));
        }
        url.check_options(&["sync", "history", "max_value_bytes", "busy_timeout"])?;
        Ok(SledOptions {
            path: path_of(url)?,
            sync: url.bool_option("sync")?.unwrap_or(false),
            history: url.parse_option("history")?.unwrap_or(DEFAULT_HISTORY),
            max_value_bytes: url
                .parse_option("max_value_bytes")?
                .unwrap_or(DEFAULT_MAX_VALUE_BYTES),
            busy_timeout: url
                .duration_option("busy_timeout")?
                .unwrap_or(DEFAULT_BUSY_TIMEOUT),
        })
    }

    /// Flushes every write to disk before it returns (default: sled's periodic flush).
    pub fn sync(mut self, sync: bool) -> SledOptions {
        self.sync = sync;
        self
    }

    /// Changes kept for `since` watches (default 10,000).
    pub fn history(mut self, changes: usize) -> SledOptions {
        self.history = changes;
        self
    }

    /// The largest value to accept (default 16 MiB).
    pub fn max_value_bytes(mut self, bytes: usize) -> SledOptions {
        self.max_value_bytes = bytes;
        self
    }

    /// How long opening waits for another process to close the store (default 5 s).
    pub fn busy_timeout(mut self, timeout: std::time::Duration) -> SledOptions {
        self.busy_timeout = timeout;
        self
    }

    /// Opens the store, creating it if needed.
    pub fn open(&self) -> Result<SledStore> {
        SledStore::open_with(&self.path, self)
    }
}

/// How long an open waits for another process to close the store (`busy_timeout`), like
/// SQLite's busy timeout: long enough for a short-lived `kvctl` in another shell to finish.
pub const DEFAULT_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn open_db(path: &Path, sync: bool, busy_timeout: std::time::Duration) -> Result<sled::Db> {
    let config = sled::Config::new().path(path);
    let config = if sync {
        config.flush_every_ms(None)
    } else {
        config
    };
    // Another process may hold the store for a moment (a `kvctl put` in another shell), and the
    // last handle in this process may be dropped a moment late (on kv-memory's timer thread, or
    // by sled's flusher): wait up to the busy timeout for the file lock.
    let deadline = std::time::Instant::now() + busy_timeout;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io))
                if is_lock_conflict(&io) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(sled::Error::Io(io)) if is_lock_conflict(&io) => {
                return Err(Error::unavailable(
                    format!(
                        "the sled store at {} is held by another process (sled allows one process at a time); waited {busy_timeout:?} for it. Stop the other process (a `kvctl watch` or `kvctl lock`?) or raise ?busy_timeout=",
                        path.display()
                    ),
                    Some(Box::new(io)),
                ));
            }
            Err(sled::Error::Io(io)) => {
                return Err(Error::unavailable(
                    format!("cannot open the sled store at {}: {io}", path.display()),
                    Some(Box::new(io)),
                ));
            }
            Err(other) => return Err(backend(other)),
        }
    }
}

/// sled reports a held file lock as an `Other` error wrapping `WouldBlock`.
fn is_lock_conflict(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock")
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SledStore {
    /// The durable namespace every call goes to.
    fn namespace(&self) -> &MemoryStore {
        &self.inner
    }
}

// Every call is the durable namespace's.
kv_core::forward_store!(impl[] SledStore => namespace);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_directories() {
        let path = |u: &str| path_of(&StoreUrl::parse(u).unwrap());
        assert_eq!(
            path("sled:///var/lib/kv").unwrap(),
            PathBuf::from("/var/lib/kv")
        );
        assert_eq!(
            path("sled://./data/kv").unwrap(),
            PathBuf::from("./data/kv")
        );
        assert_eq!(path("sled://data/kv").unwrap(), PathBuf::from("data/kv"));
        assert!(path("sled://").is_err());
        assert!(path("sled://h:1/x").is_err());
        assert!(path("sled://u:p@h/x").is_err());
        assert!(SledStore::open("sled:///tmp/x?synk=1").is_err());
    }
}
