//! Redis over TLS with client certificates, against a server this test starts.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::time::Duration;

use conformance::servers::{
    Server, find_binary, free_port, probe, server_dir, spawn_tied, test_certificates, wait_ready,
};
use kv_core::{Error, PutOptions, Store};
use kv_redis::RedisStore;

#[tokio::test]
async fn mutual_tls() {
    if conformance::servers::opted_out("redis", "TLS test") {
        return;
    }
    let binary = find_binary("redis-server", "apt-get install redis-server").unwrap();
    let dir = server_dir("redis-tls").unwrap();
    let certs = test_certificates(&dir).unwrap();
    let (plain, secure) = (free_port().unwrap(), free_port().unwrap());
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let args = vec![
        "--port".into(),
        plain.to_string(),
        "--tls-port".into(),
        secure.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--tls-cert-file".into(),
        path(&certs.server_cert),
        "--tls-key-file".into(),
        path(&certs.server_key),
        "--tls-ca-cert-file".into(),
        path(&certs.ca),
        "--tls-auth-clients".into(),
        "yes".into(),
    ];
    let lifeline = spawn_tied(&binary, &args, &dir).unwrap();
    let _server = Server::launched(format!("rediss://127.0.0.1:{secure}"), lifeline);
    wait_ready("redis with TLS", &dir, Duration::from_secs(30), || {
        probe(plain, b"PING\r\n").is_some_and(|r| r.starts_with("+PONG"))
    })
    .unwrap();

    let url = format!(
        "rediss://127.0.0.1:{secure}?root=tls&timeout=3s&ca={}&cert={}&key={}",
        path(&certs.ca),
        path(&certs.client_cert),
        path(&certs.client_key)
    );
    let store = RedisStore::open(&url).await.unwrap();
    store
        .put("k", b"over tls", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        &store.get("k").await.unwrap().unwrap().value[..],
        b"over tls"
    );

    // The same through the typed options, with the PEM as bytes (no files named).
    let typed = kv_redis::RedisOptions::new(format!("127.0.0.1:{secure}"))
        .root("tls")
        .timeout(Duration::from_secs(3))
        .tls(certs.client_tls().unwrap())
        .connect()
        .await
        .unwrap();
    assert_eq!(
        &typed.get("k").await.unwrap().unwrap().value[..],
        b"over tls"
    );

    // Without a client certificate the server refuses us, with a typed error.
    let without_identity = format!(
        "rediss://127.0.0.1:{secure}?timeout=2s&ca={}",
        path(&certs.ca)
    );
    let error = RedisStore::open(&without_identity).await.unwrap_err();
    assert!(
        error.is_transient() || matches!(error, Error::Auth { .. } | Error::Backend(_)),
        "{error:?}"
    );

    // Without trusting the test CA, the server's certificate is rejected.
    let untrusted = format!(
        "rediss://127.0.0.1:{secure}?timeout=2s&cert={}&key={}",
        path(&certs.client_cert),
        path(&certs.client_key)
    );
    assert!(RedisStore::open(&untrusted).await.is_err());
}
