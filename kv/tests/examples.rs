//! The examples that need a server, run against memory and a real one.
#![allow(clippy::unwrap_used)]

#[path = "../examples/service_registry.rs"]
#[allow(dead_code)]
mod service_registry;

/// What the registry watcher of the service-registry example must see.
const REGISTRY: [&str; 4] = ["synced", "+a", "+b", "-a"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_registry_on_memory() {
    let seen = service_registry::run("memory://registry-test")
        .await
        .unwrap();
    assert_eq!(seen, REGISTRY);
}

/// A fresh namespace on the suite's etcd server (`None`, said, where the suite skips etcd).
#[cfg(feature = "etcd")]
fn etcd_namespace() -> Option<String> {
    use conformance::servers::{EtcdProcess, Provision, provision};
    match provision(&EtcdProcess) {
        Provision::Ready(server) => Some(format!("{}/{}", server.url, conformance::random_name())),
        Provision::Skipped(message) => {
            eprintln!("{message}");
            None
        }
    }
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_registry_on_etcd() {
    let Some(url) = etcd_namespace() else { return };
    let seen = service_registry::run(&url).await.unwrap();
    assert_eq!(seen, REGISTRY);
}

#[path = "../examples/service.rs"]
#[allow(dead_code)]
mod service;

/// Two instances of the service example for `secs` seconds, each on its store of `urls`: one
/// leads at a time, and the counter (read through `direct`) holds every tick a leader counted,
/// once, plus at most those whose outcome it could not know (a fenced read-modify-write: none
/// lost, none applied twice); once they stop, both leave the registry (at once, if `at_once`;
/// else within the TTL). Returns the ticks counted and those unsure, both instances together.
async fn two_service_instances(
    urls: [String; 2],
    direct: &str,
    secs: u64,
    at_once: bool,
) -> [u64; 2] {
    let store = kv::open(direct).await.unwrap();
    let [one, two] = [1, 2].map(|n| {
        let url = urls[n - 1].clone();
        async move {
            let store = kv::open(&url).await.unwrap();
            service::run(store, format!("node-{n}"), Some(secs)).await
        }
    });
    let (one, two) = tokio::join!(one, two);
    let ([ticks_1, unsure_1], [ticks_2, unsure_2]) = (one.unwrap(), two.unwrap());
    let (ticks, unsure) = (ticks_1 + ticks_2, unsure_1 + unsure_2);
    let counter = store.get("services/api/ticks").await.unwrap().unwrap();
    let counted: u64 = std::str::from_utf8(&counter.value)
        .unwrap()
        .parse()
        .unwrap();
    assert!(ticks > 0, "someone led");
    assert!(
        (ticks..=ticks + unsure).contains(&counted),
        "ticks counted {ticks_1} + {ticks_2} (and {unsure} unsure), stored {counted}"
    );
    let until =
        std::time::Instant::now() + std::time::Duration::from_secs(if at_once { 0 } else { 7 });
    loop {
        let left = store.list("services/api/instances").await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "both left the registry: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    [ticks, unsure]
}

/// [`two_service_instances`] on one store, with no fault: nothing is unsure.
async fn two_service_instances_on(url: &str) {
    let urls = [url.to_owned(), url.to_owned()];
    let [_, unsure] = two_service_instances(urls, url, 3, true).await;
    assert_eq!(unsure, 0, "no fault, yet writes of unknown outcome");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_example_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("kv-service-{}", conformance::random_name()));
    std::fs::create_dir_all(&dir).unwrap();
    two_service_instances_on(&format!("sqlite://{}/kv.db", dir.display())).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_example_on_etcd() {
    let Some(url) = etcd_namespace() else { return };
    two_service_instances_on(&url).await;
}

/// The service example's two instances on etcd, each through a proxy of its own that the
/// robustness runner's client-side nemesis holds, resets and delays for 10 s of their 12: the
/// recipes heal, and no tick lands twice.
#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_example_on_etcd_under_faults() {
    use conformance::faults::{FaultProxy, server_addr};
    let Some(url) = etcd_namespace() else { return };
    let server = server_addr(&url).unwrap();
    let proxies = [
        FaultProxy::start(server).await.unwrap(),
        FaultProxy::start(server).await.unwrap(),
    ];
    let urls = proxies
        .each_ref()
        .map(|p| format!("{}?timeout=500ms", p.url(&url)));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let faults =
        conformance::robustness::client_faults(&proxies, seed, std::time::Duration::from_secs(10));
    let ([ticks, unsure], faults) =
        tokio::join!(two_service_instances(urls, &url, 12, false), faults);
    eprintln!(
        "the service under faults (seed {seed}): {ticks} ticks, {unsure} unsure, faults {:?}",
        faults.iter().map(|f| f.kind).collect::<Vec<_>>()
    );
    assert!(!faults.is_empty(), "the nemesis injected no fault");
}
