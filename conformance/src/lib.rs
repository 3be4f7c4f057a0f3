//! The conformance suite of **kv**: every rule of `docs/SEMANTICS.md` as a test case, written
//! once and run against every backend.
//!
//! A backend plugs in through [`Backend`], which hands out fresh, isolated namespaces (a random
//! root prefix on a shared server, a fresh in-memory namespace, ...). Each case gets its own, so
//! cases run in parallel. [`conformance_tests!`] expands into one `#[test]` per case:
//!
//! ```ignore
//! // tests/conformance.rs of a backend crate
//! struct MyBackend;
//!
//! #[async_trait::async_trait]
//! impl conformance::Backend for MyBackend {
//!     fn name(&self) -> &str { "mine" }
//!     async fn namespace(&self) -> kv_core::Result<String> {
//!         Ok(format!("mine://127.0.0.1:9999/{}", conformance::random_name()))
//!     }
//!     async fn open(&self, namespace: &str) -> kv_core::Result<std::sync::Arc<dyn kv_core::Store>> {
//!         Ok(std::sync::Arc::new(MyStore::open(namespace).await?))
//!     }
//! }
//!
//! conformance::conformance_tests!(MyBackend);
//! ```
//!
//! Cases that need a capability the backend declares missing do not pass silently: they check
//! that the calls needing it fail with `Error::Unsupported` naming it, and report
//! [`Outcome::Gated`] (printed by the test as `GATED`). [`run`] runs the suite outside the test
//! harness and returns a report, for tools such as `kvctl check`.

// The cases are tests: a failed expectation panics with its message.
#![allow(clippy::unwrap_used)]

mod cases;
pub mod clusters;
pub mod faults;
pub mod native;
pub mod netns;
pub mod proxy;
mod restricted;
pub mod robustness;
pub mod servers;
#[cfg(feature = "testcontainers")]
pub use servers::containers;
mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use kv_core::{Capabilities, Result, Store};

pub use restricted::Restricted;
pub use support::random_name;

/// How the suite gets stores of the backend under test.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's name, for reports.
    fn name(&self) -> &str;

    /// Creates a fresh namespace nobody else uses and returns its locator (usually a store
    /// URL with a random root prefix or name).
    async fn namespace(&self) -> Result<String>;

    /// Opens a new, independent handle on a namespace from [`Backend::namespace`]. Handles on
    /// the same namespace see the same data, watches and locks.
    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>>;

    /// `Some(message)` if the user opted out of this backend's tests (see
    /// [`servers::provision`]); the test then reports the message loudly instead of running.
    fn skipped(&self) -> Option<String> {
        None
    }
}

/// What a case gets: a store on a fresh namespace, and a way to open more handles on it.
pub struct Ctx {
    backend: Arc<dyn Backend>,
    namespace: String,
    store: Arc<dyn Store>,
}

impl Ctx {
    /// Creates a fresh namespace and opens its first handle.
    pub async fn new(backend: Arc<dyn Backend>) -> Result<Ctx> {
        let namespace = backend.namespace().await?;
        let store = backend.open(&namespace).await?;
        Ok(Ctx {
            backend,
            namespace,
            store,
        })
    }

    /// The case's main handle.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The backend's capabilities.
    pub fn caps(&self) -> &Capabilities {
        self.store.capabilities()
    }

    /// Another handle on the same namespace (another client of the same data).
    pub async fn another(&self) -> Arc<dyn Store> {
        match self.backend.open(&self.namespace).await {
            Ok(store) => store,
            Err(e) => panic!("opening a second handle on {} failed: {e}", self.namespace),
        }
    }
}

/// How a case ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every rule held.
    Passed,
    /// The backend declares this capability missing; the case checked that the calls needing
    /// it fail with `Error::Unsupported`.
    Gated(&'static str),
}

/// One test case of the suite.
pub struct Case {
    /// The case's name (also the test function's name).
    pub name: &'static str,
    /// The area it covers (`keys`, `watch`, `locks`, ...), for `--only` style filters.
    pub area: &'static str,
    run: fn(Ctx) -> BoxFuture<'static, Outcome>,
}

impl Case {
    /// Runs the case on a fresh namespace, returning its outcome or the reason it failed.
    pub async fn run(&self, backend: Arc<dyn Backend>) -> Result<Outcome, String> {
        let ctx = Ctx::new(backend)
            .await
            .map_err(|e| format!("could not open a store: {e}"))?;
        let task = tokio::spawn((self.run)(ctx));
        match tokio::time::timeout(CASE_TIMEOUT, task).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(join)) => Err(match join.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the case panicked".into()),
                Err(e) => format!("the case was cancelled: {e}"),
            }),
            Err(_) => Err(format!("the case did not finish within {CASE_TIMEOUT:?}")),
        }
    }
}

/// No case may run longer than this.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Every case of the suite, in a stable order.
pub fn cases() -> &'static [Case] {
    cases::ALL
}

/// The result of one case in a [`run`].
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case's name.
    pub name: &'static str,
    /// Its area.
    pub area: &'static str,
    /// Passed or gated, or the failure message.
    pub result: Result<Outcome, String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Runs every case whose area or name `filter` accepts, one after another, and reports each.
pub async fn run(backend: Arc<dyn Backend>, filter: impl Fn(&Case) -> bool) -> Vec<CaseReport> {
    let mut reports = Vec::new();
    for case in cases().iter().filter(|c| filter(c)) {
        let started = Instant::now();
        let result = case.run(backend.clone()).await;
        reports.push(CaseReport {
            name: case.name,
            area: case.area,
            result,
            elapsed: started.elapsed(),
        });
    }
    reports
}

/// Runs one case by name as a test: panics with the failure, prints `GATED` for a gated case.
/// Used by [`conformance_tests!`].
pub fn run_test(name: &str, backend: impl Backend) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the test");
    let case = cases()
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no conformance case named {name}"));
    if let Some(message) = backend.skipped() {
        let _ = writeln!(std::io::stderr(), "{message} ({name})");
        return;
    }
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let backend_name = backend.name().to_owned();
    match runtime.block_on(case.run(backend)) {
        Ok(Outcome::Passed) => {}
        Ok(Outcome::Gated(capability)) => {
            // Written to the stderr handle directly: the test harness captures `eprintln!` of
            // passing tests, and a gated case must be visible.
            let _ = writeln!(
                std::io::stderr(),
                "GATED {backend_name}::{name}: the backend declares `{capability}` unsupported; checked that it says so"
            );
        }
        Err(failure) => panic!("{backend_name}::{name} failed: {failure}"),
    }
}

/// Expands into one `#[test]` per conformance case, each running against a fresh namespace of
/// `$backend` (an expression of a type implementing [`Backend`], evaluated per test).
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::__with_cases!(__generate_tests { $backend });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __generate_tests {
    ({ $backend:expr } $($area:ident :: $name:ident)*) => {
        $(
            #[test]
            fn $name() {
                $crate::run_test(stringify!($name), $backend);
            }
        )*
    };
}
