//! A namespace shared by every handle opened on it, its registry, and its timer task.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use kv_core::{Capabilities, Error, Result};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::state::State;

/// One namespace: the data, and the signals its async parts wait on.
pub(crate) struct Namespace {
    pub state: RwLock<State>,
    /// Signalled whenever a lock is released or expires; lock waiters retry.
    pub lock_freed: Notify,
    /// Wakes the timer task when an earlier deadline was added, or when the namespace drops.
    timer_wakeup: Arc<Notify>,
    pub capabilities: Capabilities,
}

impl Namespace {
    /// A new namespace with its timer task running.
    pub fn new(capabilities: Capabilities, state: State) -> Result<Arc<Namespace>> {
        let namespace = Arc::new(Namespace {
            state: RwLock::new(state),
            lock_freed: Notify::new(),
            timer_wakeup: Arc::new(Notify::new()),
            capabilities,
        });
        let runtime = timer_runtime()
            .ok_or_else(|| Error::Backend("kv-memory could not start its timer thread".into()))?;
        runtime.spawn(run_timers(
            Arc::downgrade(&namespace),
            namespace.timer_wakeup.clone(),
        ));
        Ok(namespace)
    }

    /// Runs a lock's renewal on the caller's tokio runtime, so that a caller that stalls stops
    /// renewing (and loses the lock, as it would on a server); without one (another executor),
    /// on kv-memory's own runtime.
    pub fn spawn_renewal(&self, renewal: impl Future<Output = ()> + Send + 'static) {
        match tokio::runtime::Handle::try_current() {
            Ok(caller) => drop(caller.spawn(renewal)),
            Err(_) => {
                if let Some(own) = timer_runtime() {
                    drop(own.spawn(renewal));
                }
            }
        }
    }

    /// Call after adding a deadline (a TTL write, a lock grant or renewal).
    pub fn wake_timers(&self) {
        self.timer_wakeup.notify_one();
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Let the timer task see that the namespace is gone and end.
        self.timer_wakeup.notify_one();
    }
}

/// Expires TTL keys and lock leases at their deadlines. Holds the namespace only weakly and
/// ends when it is dropped.
async fn run_timers(namespace: Weak<Namespace>, wakeup: Arc<Notify>) {
    loop {
        let Some(ns) = namespace.upgrade() else {
            return;
        };
        let (next, freed) = ns.state.write().run_due_timers(Instant::now());
        if freed {
            ns.lock_freed.notify_waiters();
        }
        drop(ns);
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = wakeup.notified() => {}
                }
            }
            None => wakeup.notified().await,
        }
    }
}

/// A runtime on its own thread for the timer tasks, so that expiry does not depend on the
/// lifetime or liveness of the caller's runtime (a named namespace outlives any one of them,
/// and a stalled caller must still see its leases expire).
fn timer_runtime() -> Option<&'static tokio::runtime::Handle> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .ok()?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("kv-memory-timers".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Named namespaces by name, with their open handle count.
type Registry = HashMap<String, (Arc<Namespace>, usize)>;

/// The named namespaces with at least one open handle, and how many handles each has.
fn registry() -> &'static Mutex<Registry> {
    static NAMED: OnceLock<Mutex<Registry>> = OnceLock::new();
    NAMED.get_or_init(Default::default)
}

/// The shared namespace `id` (see `Shared`) for a new handle, created if no handle has it open.
pub(crate) fn open_shared(
    name: &str,
    create: impl FnOnce() -> Result<Arc<Namespace>>,
) -> Result<Arc<Namespace>> {
    let mut named = registry().lock();
    if let Some((namespace, handles)) = named.get_mut(name) {
        *handles += 1;
        return Ok(namespace.clone());
    }
    let namespace = create()?;
    named.insert(name.to_owned(), (namespace.clone(), 1));
    Ok(namespace)
}

/// A handle on the named namespace was dropped; the last one forgets the name (watches and
/// guards still running keep their namespace until they end).
pub(crate) fn close_shared(name: &str) {
    let mut named = registry().lock();
    if let Some((_, handles)) = named.get_mut(name) {
        *handles -= 1;
        if *handles == 0 {
            named.remove(name);
        }
    }
}
