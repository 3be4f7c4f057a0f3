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

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_registry_on_etcd() {
    use conformance::servers::{EtcdProcess, Provision, provision};
    let server = match provision(&EtcdProcess) {
        Provision::Ready(server) => server,
        Provision::Skipped(message) => {
            eprintln!("{message}");
            return;
        }
    };
    let url = format!("{}/{}", server.url, conformance::random_name());
    let seen = service_registry::run(&url).await.unwrap();
    assert_eq!(seen, REGISTRY);
}
