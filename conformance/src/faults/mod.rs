//! Fault injection between a client and a real server: a TCP proxy on a free loopback port that
//! passes, holds (a partition: bytes are kept, connections stay open, and everything is
//! delivered in order on heal), delays, or resets a client's traffic, and the fault cases every
//! networked backend runs through it.
//!
//! Tests open one store through the proxy ([`FaultProxy::url`]) and one directly, so the other
//! side of a partition keeps working. [`fault_tests!`](crate::fault_tests) expands into every
//! fault test for one backend. Cases that need control over the server itself (stopping
//! it) take a closure that does it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kv_core::{Error, LockOptions, PutOptions, Store, WatchOptions};

mod locks;
mod recipes;
mod restarts;
mod watches;
mod writes;

pub use crate::proxy::{FaultProxy, Mode, server_addr};
pub use locks::{
    a_partitioned_lock_holder_is_told_first, a_revoke_cut_off,
    a_waiter_outlasting_its_ttl_gets_the_lock, lock_faults,
};
pub use recipes::{HealedAfter, recipes_heal_after_an_outage};
pub use restarts::{
    RestartOutcome, a_paused_server, a_server_restart, a_stopped_server, restart_faults,
};
pub use watches::{
    WATCH_LIVENESS, WatchOutcome, a_watch_that_stops_hearing_the_server_ends,
    a_watch_through_a_partition, watch_faults,
};
pub use writes::{a_write_during_a_partition, a_write_whose_answer_is_lost};

/// A proxy in front of the server at `server_url`, a store opened directly and one through the
/// proxy (`open(url + suffix)` each).
pub async fn proxied_stores<S, F, Fut>(
    server_url: &str,
    suffix: &str,
    open: &F,
) -> (FaultProxy, S, S)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    let target =
        server_addr(server_url).unwrap_or_else(|| panic!("no 127.0.0.1:port in {server_url}"));
    let proxy = FaultProxy::start(target).await.expect("fault proxy");
    let direct = open(format!("{server_url}{suffix}"))
        .await
        .expect("direct store");
    let proxied = open(format!("{}{suffix}", proxy.url(server_url)))
        .await
        .expect("store through the proxy");
    (proxy, direct, proxied)
}

/// A server of `launcher`'s kind for one fault test, its own (so it can be cut off, killed and
/// restarted); `None`, after saying so, if `KV_TEST_SKIP` opts the kind out. Panics, with what
/// to install, if none can be started.
pub fn own_server(launcher: &dyn crate::servers::Launcher) -> Option<crate::servers::Server> {
    let kind = launcher.kind();
    if crate::servers::opted_out(kind, "fault tests") {
        return None;
    }
    Some(
        crate::servers::with_port_retries(|| launcher.start())
            .unwrap_or_else(|e| panic!("no {kind} server for the fault tests: {e}")),
    )
}

/// Expands into the fault tests of one networked backend, each against a server of its own
/// started by `$launcher` (a process launcher), with stores opened by `$open(url)` where url is
/// the server's URL + `$suffix` (which should set `timeout=1s`):
/// `locks_keep_their_promises_through_a_partition` ([`lock_faults`], TTL 3 s),
/// `watches_keep_their_promises_through_a_partition` ([`watch_faults`], a 4 s partition),
/// `a_write_whose_answer_is_lost_is_an_unknown_outcome` ([`a_write_whose_answer_is_lost`],
/// 200 ms per chunk), `a_revoke_cut_off_by_a_partition_says_so` ([`a_revoke_cut_off`], TTL 3 s)
/// and `a_restarted_or_paused_server_is_used_again` ([`restart_faults`]).
///
/// ```ignore
/// conformance::fault_tests!(&EtcdProcess, "/faults?timeout=1s", |url: String| async move {
///     EtcdStore::open(&url).await
/// });
/// ```
#[macro_export]
macro_rules! fault_tests {
    ($launcher:expr, $suffix:expr, $open:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn locks_keep_their_promises_through_a_partition() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let ttl = ::std::time::Duration::from_secs(3);
            $crate::faults::lock_faults(kind, &server.url, $suffix, ttl, $open).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn watches_keep_their_promises_through_a_partition() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let hold = ::std::time::Duration::from_secs(4);
            $crate::faults::watch_faults(kind, &server.url, $suffix, hold, $open).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_write_whose_answer_is_lost_is_an_unknown_outcome() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let (proxy, direct, proxied) =
                $crate::faults::proxied_stores(&server.url, $suffix, &$open).await;
            let delay = ::std::time::Duration::from_millis(200);
            let error =
                $crate::faults::a_write_whose_answer_is_lost(&proxied, &direct, &proxy, delay)
                    .await;
            eprintln!("{kind}: a put whose answer was reset: {error}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_revoke_cut_off_by_a_partition_says_so() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            let (proxy, direct, proxied) =
                $crate::faults::proxied_stores(&server.url, $suffix, &$open).await;
            let ttl = ::std::time::Duration::from_secs(3);
            let (said, gone) =
                $crate::faults::a_revoke_cut_off(&proxied, &direct, &proxy, ttl).await;
            eprintln!("{kind}: a revoke during a partition said {said}; its key was gone {gone:?} after it returned");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_restarted_or_paused_server_is_used_again() {
            let Some(server) = $crate::faults::own_server($launcher) else {
                return;
            };
            let kind = $crate::servers::Launcher::kind($launcher);
            $crate::faults::restart_faults(kind, &server, $suffix, $open).await;
        }
    };
}
