//! `consuls://` against an agent that serves HTTPS and requires client certificates.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use conformance::servers::{ConsulProcess, free_port, server_dir, test_certificates};
use kv_consul::ConsulStore;
use kv_core::{Error, PutOptions, Store};

#[tokio::test]
async fn mutual_tls() {
    if conformance::servers::opted_out("consul", "TLS test") {
        return;
    }
    let dir = server_dir("consul-tls").unwrap();
    let certs = test_certificates(&dir).unwrap();
    let https = free_port().unwrap();
    let _server = ConsulProcess
        .start_with(&format!(
            r#"ports {{ https = {https} }}
               ca_file = "{}"
               cert_file = "{}"
               key_file = "{}"
               verify_incoming = true"#,
            certs.ca.display(),
            certs.server_cert.display(),
            certs.server_key.display()
        ))
        .unwrap();
    let base = format!(
        "consuls://127.0.0.1:{https}/tls?timeout=3s&ca={}",
        certs.ca.display()
    );
    let store = ConsulStore::open(&format!(
        "{base}&cert={}&key={}",
        certs.client_cert.display(),
        certs.client_key.display()
    ))
    .await
    .unwrap();
    store
        .put("k", b"over tls", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        &store.get("k").await.unwrap().unwrap().value[..],
        b"over tls"
    );

    // The same through the typed options, with the PEM as bytes (no files named).
    let typed = kv_consul::ConsulOptions::new([format!("127.0.0.1:{https}")])
        .root("tls")
        .timeout(std::time::Duration::from_secs(3))
        .tls(certs.client_tls().unwrap())
        .connect()
        .await
        .unwrap();
    assert_eq!(
        &typed.get("k").await.unwrap().unwrap().value[..],
        b"over tls"
    );

    let error = ConsulStore::open(&base)
        .await
        .expect_err("the agent requires a client certificate");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
}
