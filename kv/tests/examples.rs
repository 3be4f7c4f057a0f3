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

/// Two instances of the service example on one store: one leads at a time and every tick a
/// leader counted is in the counter exactly once (fenced, read-modify-write: none lost, none
/// applied twice).
async fn two_service_instances(url: &str) {
    let store = kv::open(url).await.unwrap();
    let (one, two) = tokio::join!(
        service::run(kv::open(url).await.unwrap(), "node-1".into(), Some(3)),
        service::run(kv::open(url).await.unwrap(), "node-2".into(), Some(3)),
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    let counter = store.get("services/api/ticks").await.unwrap().unwrap();
    let counted: u64 = std::str::from_utf8(&counter.value)
        .unwrap()
        .parse()
        .unwrap();
    assert!(one + two > 0, "someone led");
    assert_eq!(
        counted,
        one + two,
        "ticks counted {one} + {two}, stored {counted}"
    );
    assert!(
        store
            .list("services/api/instances")
            .await
            .unwrap()
            .is_empty(),
        "both left the registry"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_example_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("kv-service-{}", conformance::random_name()));
    std::fs::create_dir_all(&dir).unwrap();
    two_service_instances(&format!("sqlite://{}/kv.db", dir.display())).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_example_on_etcd() {
    let Some(url) = etcd_namespace() else { return };
    two_service_instances(&url).await;
}
