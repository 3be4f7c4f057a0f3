//! `zookeepers://` against a server with a TLS client port (Netty) that requires client
//! certificates.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::time::Duration;

use conformance::servers::{
    find_binary, free_port, probe, server_dir, spawn_tied, test_certificates, wait_ready,
};
use kv_core::{PutOptions, Store};
use kv_zookeeper::ZooKeeperStore;

/// The Netty jars Debian ships beside ZooKeeper (its TLS port needs Netty).
fn netty_classpath() -> String {
    let mut jars: Vec<String> = std::fs::read_dir("/usr/share/java")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("netty-") && n.ends_with(".jar") && !n.contains(".Final"))
        .map(|n| format!("/usr/share/java/{n}"))
        .collect();
    jars.sort();
    jars.join(":")
}

#[tokio::test]
async fn mutual_tls() {
    if conformance::servers::opted_out("zookeeper", "TLS test") {
        return;
    }
    let java = find_binary("java", "apt-get install default-jre-headless").unwrap();
    let dir = server_dir("zookeeper-tls").unwrap();
    let certs = test_certificates(&dir).unwrap();
    let keystore = dir.join("server-keystore.pem");
    std::fs::write(
        &keystore,
        std::fs::read_to_string(&certs.server_key).unwrap()
            + &std::fs::read_to_string(&certs.server_cert).unwrap(),
    )
    .unwrap();
    let (plain, secure) = (free_port().unwrap(), free_port().unwrap());
    let config = dir.join("zoo.cfg");
    std::fs::write(
        &config,
        format!(
            "tickTime=200\ndataDir={}\nclientPort={plain}\nsecureClientPort={secure}\n\
             clientPortAddress=127.0.0.1\nsecureClientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=srvr\nextendedTypesEnabled=true\n\
             ssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
             ssl.trustStore.location={}\nssl.trustStore.type=PEM\n\
             ssl.clientAuth=need\nssl.hostnameVerification=false\n",
            dir.join("data").display(),
            keystore.display(),
            certs.ca.display(),
        ),
    )
    .unwrap();
    let args: Vec<String> = vec![
        "-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory".into(),
        "-cp".into(),
        format!(
            "/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar:/usr/share/java/slf4j-simple.jar:{}",
            netty_classpath()
        ),
        "org.apache.zookeeper.server.ZooKeeperServerMain".into(),
        config.to_string_lossy().into_owned(),
    ];
    let _lifeline = spawn_tied(&java, &args, &dir).unwrap();
    wait_ready("zookeeper", &dir, Duration::from_secs(60), || {
        probe(plain, b"srvr").is_some_and(|r| r.contains("Mode: standalone"))
    })
    .unwrap();
    // The TLS port opens after the plain one answers.
    wait_ready("zookeeper TLS port", &dir, Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", secure)).is_ok()
    })
    .unwrap();

    let base = format!(
        "zookeepers://127.0.0.1:{secure}/tls?timeout=3s&ca={}",
        certs.ca.display()
    );
    let store = ZooKeeperStore::open(&format!(
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
    let typed = kv_zookeeper::ZooKeeperOptions::new([format!("127.0.0.1:{secure}")])
        .base("/tls")
        .timeout(Duration::from_secs(3))
        .tls(certs.client_tls().unwrap())
        .connect()
        .await
        .unwrap();
    assert_eq!(
        &typed.get("k").await.unwrap().unwrap().value[..],
        b"over tls"
    );

    let error = ZooKeeperStore::open(&base)
        .await
        .expect_err("the server requires a client certificate");
    assert!(error.is_transient(), "{error:?}");
}
