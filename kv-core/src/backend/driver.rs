//! [`Driver`]: a backend as `kv::open` and the tools know it, declared once in its own crate.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;
use crate::store::Store;
use crate::url::StoreUrl;

/// The future a [`Driver`]'s opener returns.
pub type Opening = Pin<Box<dyn Future<Output = Result<Arc<dyn Store>>> + Send + 'static>>;

/// Where a backend keeps its data, which decides what tools can do with its URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Locality {
    /// In this process only: gone when it exits (`memory://`).
    Process,
    /// In a local file or directory, which [`Driver::local_path`] names.
    File,
    /// On servers reached over the network.
    Server,
}

/// A backend, declared in its crate (`kv_etcd::DRIVER`): its name, its URL schemes, how to open
/// a store for a URL, and what tools (`kvctl`, the `kv` facade) need to know of it — so that
/// none of them matches scheme strings.
///
/// ```
/// use kv_core::backend::{Driver, Locality, Opening};
/// use kv_core::StoreUrl;
/// fn open(url: StoreUrl) -> Opening {
///     Box::pin(async move { Err(kv_core::Error::invalid_url(format!("{} is a demo", url.scheme))) })
/// }
/// const DRIVER: Driver = Driver::new("mine", &["mine", "mines"], Locality::Server, open);
/// assert!(DRIVER.opens("mines"));
/// let url = StoreUrl::parse("mine://10.0.0.1:7000/app").unwrap();
/// assert_eq!(DRIVER.scratch(&url, "t1").unwrap().path, "app/t1");
/// ```
#[derive(Clone, Copy)]
pub struct Driver {
    name: &'static str,
    schemes: &'static [&'static str],
    locality: Locality,
    open: fn(StoreUrl) -> Opening,
    scratch: fn(&StoreUrl, &str) -> Result<StoreUrl>,
    local_path: Option<fn(&StoreUrl) -> Result<PathBuf>>,
    leases_outlive_process: bool,
    busy_hint: Option<&'static str>,
}

impl Driver {
    /// A driver named `name` (as its stores' [`Capabilities::backend`](crate::Capabilities))
    /// that opens URLs of `schemes` (the first is the canonical one) with `open`. Scratch
    /// namespaces are a path segment below the URL's path; leases outlive the process unless
    /// the backend keeps its data in it.
    pub const fn new(
        name: &'static str,
        schemes: &'static [&'static str],
        locality: Locality,
        open: fn(StoreUrl) -> Opening,
    ) -> Driver {
        Driver {
            name,
            schemes,
            locality,
            open,
            scratch: scratch_below_path,
            local_path: None,
            leases_outlive_process: !matches!(locality, Locality::Process),
            busy_hint: None,
        }
    }

    /// How this backend makes a fresh namespace `leaf` inside the store a URL names, when a
    /// path segment below the URL's path is not the way (a `?root=` option, a temporary file).
    pub const fn with_scratch(mut self, scratch: fn(&StoreUrl, &str) -> Result<StoreUrl>) -> Self {
        self.scratch = scratch;
        self
    }

    /// The file or directory a URL of this (file) backend names.
    pub const fn with_local_path(mut self, local_path: fn(&StoreUrl) -> Result<PathBuf>) -> Self {
        self.local_path = Some(local_path);
        self
    }

    /// Leases end with the process that granted them (no other process can take one up
    /// with [`Store::attach_lease`] after it has gone): a store one process holds at a time.
    pub const fn with_leases_bound_to_process(mut self) -> Self {
        self.leases_outlive_process = false;
        self
    }

    /// What to tell a user whose open failed because another process holds the store.
    pub const fn with_busy_hint(mut self, hint: &'static str) -> Self {
        self.busy_hint = Some(hint);
        self
    }

    /// The backend's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The URL schemes it opens, the canonical one first.
    pub fn schemes(&self) -> &'static [&'static str] {
        self.schemes
    }

    /// True if it opens `scheme://` URLs.
    pub fn opens(&self, scheme: &str) -> bool {
        self.schemes.contains(&scheme)
    }

    /// Where it keeps its data.
    pub fn locality(&self) -> Locality {
        self.locality
    }

    /// Opens the store `url` names (its scheme is one of [`Driver::schemes`]).
    pub fn open(&self, url: StoreUrl) -> Opening {
        (self.open)(url)
    }

    /// The URL of a fresh namespace `leaf` inside the store `url` names, for throwaway data
    /// (`kvctl check`, tests).
    pub fn scratch(&self, url: &StoreUrl, leaf: &str) -> Result<StoreUrl> {
        (self.scratch)(url, leaf)
    }

    /// The file or directory a URL names; `None` for a backend that keeps no local file.
    pub fn local_path(&self, url: &StoreUrl) -> Option<Result<PathBuf>> {
        self.local_path.map(|path| path(url))
    }

    /// Whether a lease can be taken up by another process once its granter has gone.
    pub fn leases_outlive_process(&self) -> bool {
        self.leases_outlive_process
    }

    /// What to say when opening failed because another process holds the store.
    pub fn busy_hint(&self) -> Option<&'static str> {
        self.busy_hint
    }
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("name", &self.name)
            .field("schemes", &self.schemes)
            .field("locality", &self.locality)
            .finish_non_exhaustive()
    }
}

/// The default scratch namespace: a path segment below the URL's path.
fn scratch_below_path(url: &StoreUrl, leaf: &str) -> Result<StoreUrl> {
    let mut url = url.clone();
    url.path = match url.path.is_empty() {
        true => leaf.to_owned(),
        false => format!("{}/{leaf}", url.path),
    };
    Ok(url)
}

/// A scratch namespace that is a directory of its own under the system's temporary directory,
/// for file backends: `file` names the store inside it (`""` for the directory itself).
pub fn scratch_in_temp_dir(url: &StoreUrl, leaf: &str, file: &str) -> Result<StoreUrl> {
    let dir = std::env::temp_dir().join(leaf);
    let path = match file {
        "" => dir,
        file => dir.join(file),
    };
    StoreUrl::parse(&format!("{}://{}", url.scheme, path.display()))
}
