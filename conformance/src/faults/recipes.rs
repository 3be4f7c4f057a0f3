//! The recipes (elections, registrations) after an outage.

use super::*;

/// The server is killed with SIGKILL and started again on the same data directory and port.
/// How two service instances' recipes came back after an outage.
#[derive(Debug, Clone, Copy)]
pub struct HealedAfter {
    /// From the server's return until both instances were registered again (new leases).
    pub registered: Duration,
    /// From the server's return until one instance led again (a new term).
    pub leading: Duration,
    /// The recipes' lease TTL.
    pub ttl: Duration,
}

/// Two instances of a service, each a handle (`open(server.url + suffix)`) with a
/// [`kv_core::Registration`] and an [`kv_core::Election::run`], through an outage: the
/// server killed, down for `outage` (longer than the TTLs: every lease is lost on the client
/// side), restarted on its data. Panics unless both are registered again and one leads again
/// within 30 s of the server's return; returns how long each took.
pub async fn recipes_heal_after_an_outage<S, F, Fut>(
    server: &crate::servers::Server,
    suffix: &str,
    outage: Duration,
    open: F,
) -> HealedAfter
where
    S: Store + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kv_core::Result<S>>,
{
    use kv_core::{Election, Registered, Registration};
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..2 {
        let store = open(format!("{}{suffix}", server.url)).await.expect("open");
        stores.push(Arc::new(store));
    }
    let ttl = stores[0]
        .capabilities()
        .ttl
        .map_or(Duration::ZERO, |t| t.min)
        .max(Duration::from_secs(2));
    let (terms, mut elected) = tokio::sync::mpsc::unbounded_channel();
    let stop = kv_core::CancellationToken::new();
    let mut registrations = Vec::new();
    let mut runs = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let key = format!("outage/instances/{n}");
        registrations.push(Registration::start(store.clone(), &key, "up", ttl).expect("register"));
        let election = Election::new(store.clone(), "outage/leader")
            .expect("election")
            .ttl(ttl);
        let (terms, stop) = (terms.clone(), stop.clone());
        runs.push(tokio::spawn(async move {
            election
                .run(format!("{n}"), stop, move |term| {
                    let _ = terms.send(term);
                    std::future::pending::<()>()
                })
                .await
        }));
    }
    for registration in &registrations {
        registration
            .live()
            .await
            .expect("registered before the outage");
    }
    let first = tokio::time::timeout(Duration::from_secs(30), elected.recv())
        .await
        .expect("a leader before the outage")
        .expect("terms");
    let leases: Vec<Registered> = registrations.iter().map(Registration::state).collect();
    tokio::task::block_in_place(|| {
        server.kill9().expect("kill -9");
        std::thread::sleep(outage);
        server
            .restart()
            .expect("restart on the same data directory");
    });
    let returned = Instant::now();
    let (mut registered, mut leading) = (None, None);
    while registered.is_none() || leading.is_none() {
        assert!(
            returned.elapsed() < Duration::from_secs(30),
            "30 s after the server's return: registered again {registered:?} ({:?}), \
             leading again {leading:?}",
            registrations
                .iter()
                .map(Registration::state)
                .collect::<Vec<_>>()
        );
        if leading.is_none() {
            while let Ok(term) = elected.try_recv() {
                if term.fencing_token() > first.fencing_token() && !term.lost().is_cancelled() {
                    leading = Some(returned.elapsed());
                }
            }
        }
        if registered.is_none()
            && registrations.iter().zip(&leases).all(|(r, before)| {
                matches!(r.state(), Registered::Live { .. }) && r.state() != *before
            })
        {
            registered = Some(returned.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..2 {
        assert!(
            stores[0]
                .exists(&format!("outage/instances/{n}"))
                .await
                .expect("read after the outage"),
            "instance {n} registered again"
        );
    }
    stop.cancel();
    for run in runs {
        let _ = run.await;
    }
    for registration in registrations {
        registration.stop().await;
    }
    HealedAfter {
        registered: registered.unwrap_or_default(),
        leading: leading.unwrap_or_default(),
        ttl,
    }
}
