//! etcd over TLS with client certificates, against a server this test starts.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::time::Duration;

use conformance::servers::{
    Server, find_binary, free_port, probe, server_dir, spawn_tied, test_certificates, wait_ready,
};
use kv_core::{Error, PutOptions, Store};
use kv_etcd::EtcdStore;

#[tokio::test]
async fn mutual_tls() {
    if conformance::servers::opted_out("etcd", "TLS test") {
        return;
    }
    let binary = find_binary("etcd", "apt-get install etcd-server").unwrap();
    let dir = server_dir("etcd-tls").unwrap();
    let certs = test_certificates(&dir).unwrap();
    let (client, peer, metrics) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let args = vec![
        "--name".into(),
        "kvtls".into(),
        "--data-dir".into(),
        path(&dir.join("data")),
        "--listen-client-urls".into(),
        format!("https://127.0.0.1:{client}"),
        "--advertise-client-urls".into(),
        format!("https://127.0.0.1:{client}"),
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{peer}"),
        "--initial-advertise-peer-urls".into(),
        format!("http://127.0.0.1:{peer}"),
        "--initial-cluster".into(),
        format!("kvtls=http://127.0.0.1:{peer}"),
        "--listen-metrics-urls".into(),
        format!("http://127.0.0.1:{metrics}"),
        "--cert-file".into(),
        path(&certs.server_cert),
        "--key-file".into(),
        path(&certs.server_key),
        "--client-cert-auth".into(),
        "--trusted-ca-file".into(),
        path(&certs.ca),
        "--log-level".into(),
        "warn".into(),
    ];
    let lifeline = spawn_tied(&binary, &args, &dir).unwrap();
    let _server = Server::launched(format!("etcds://127.0.0.1:{client}"), lifeline);
    wait_ready("etcd with TLS", &dir, Duration::from_secs(30), || {
        probe(metrics, b"GET /health HTTP/1.0\r\n\r\n")
            .is_some_and(|r| r.contains("\"health\":\"true\""))
    })
    .unwrap();

    let url = format!(
        "etcds://127.0.0.1:{client}/tls?timeout=3s&connect_timeout=3s&ca={}&cert={}&key={}",
        path(&certs.ca),
        path(&certs.client_cert),
        path(&certs.client_key)
    );
    let store = EtcdStore::open(&url).await.unwrap();
    store
        .put("k", b"over tls", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        &store.get("k").await.unwrap().unwrap().value[..],
        b"over tls"
    );

    // The same through the typed options, with the PEM as bytes (no files named).
    let typed = kv_etcd::EtcdOptions::new([format!("127.0.0.1:{client}")])
        .root("tls")
        .timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(3))
        .tls(certs.client_tls().unwrap())
        .connect()
        .await
        .unwrap();
    assert_eq!(
        &typed.get("k").await.unwrap().unwrap().value[..],
        b"over tls"
    );

    // Without a client certificate the server refuses the connection.
    let without_identity = format!(
        "etcds://127.0.0.1:{client}/tls?timeout=2s&connect_timeout=2s&ca={}",
        path(&certs.ca)
    );
    let error = EtcdStore::open(&without_identity).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unavailable { .. } | Error::Timeout { .. } | Error::Auth { .. }
        ),
        "{error:?}"
    );

    // A plain connection to the TLS port fails too, with a typed error.
    let plain = format!("etcd://127.0.0.1:{client}/tls?timeout=2s&connect_timeout=2s");
    assert!(EtcdStore::open(&plain).await.unwrap_err().is_transient());

    // Without `ca=`, the system's roots: here the test CA, made the system's by SSL_CERT_FILE
    // (which rustls-native-certs honours), in a child run of this test binary so that the
    // variable is set before anything starts.
    let system_roots = format!(
        "etcds://127.0.0.1:{client}/tls?timeout=3s&connect_timeout=3s&cert={}&key={}",
        path(&certs.client_cert),
        path(&certs.client_key)
    );
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "with_the_system_roots", "--nocapture"])
        .env("SSL_CERT_FILE", &certs.ca)
        .env("KV_TEST_SYSTEM_ROOTS_URL", &system_roots)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&child.stdout).into_owned()
        + &String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success() && said.contains("read over TLS with the system's roots"),
        "without ca=, the system's roots: {said}"
    );

    // cert without key is a bad URL, reported before connecting.
    let half = format!(
        "etcds://127.0.0.1:{client}?cert={}",
        path(&certs.client_cert)
    );
    assert!(matches!(
        EtcdStore::open(&half).await,
        Err(Error::InvalidUrl { .. })
    ));
}

/// The child run of [`mutual_tls`]: opens `KV_TEST_SYSTEM_ROOTS_URL` (no `ca=`) with
/// `SSL_CERT_FILE` naming the test CA. Does nothing when run on its own.
#[tokio::test]
async fn with_the_system_roots() {
    let Ok(url) = std::env::var("KV_TEST_SYSTEM_ROOTS_URL") else {
        return;
    };
    let store = EtcdStore::open(&url).await.unwrap();
    assert_eq!(
        &store.get("k").await.unwrap().unwrap().value[..],
        b"over tls"
    );
    println!("read over TLS with the system's roots");
}
