//! Failure paths against real etcd servers that these tests start and stop themselves.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

use std::time::{Duration, Instant};

use conformance::servers::{EtcdProcess, Launcher};
use kv_core::{Error, PutOptions, Store};
use kv_etcd::EtcdStore;

fn own_server() -> Option<conformance::servers::Server> {
    if conformance::servers::opted_out("etcd", "fault tests") {
        return None;
    }
    Some(
        EtcdProcess
            .start()
            .unwrap_or_else(|e| panic!("no etcd for the fault tests: {e}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_gives_typed_errors_and_ends_watches() {
    let Some(server) = own_server() else { return };
    let url = format!("{}/faults?timeout=1s&connect_timeout=1s", server.url);
    let store = EtcdStore::open(&url).await.unwrap();
    conformance::faults::a_stopped_server(&store, || drop(server)).await;
}

#[tokio::test]
async fn an_unreachable_cluster_fails_at_open() {
    let port = conformance::servers::free_port().unwrap();
    let started = Instant::now();
    let error = EtcdStore::open(&format!(
        "etcd://127.0.0.1:{port}?timeout=1s&connect_timeout=1s"
    ))
    .await
    .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() {
    let Some(server) = own_server() else { return };
    let endpoint = server.url.replace("etcd://", "http://");
    enable_auth(&endpoint, "root", "s3cret-pw").await;

    let host = server.url.trim_start_matches("etcd://");
    let error = EtcdStore::open(&format!("etcd://root:wrong-pw@{host}/app?timeout=2s"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Auth { .. }), "{error:?}");
    assert!(
        !format!("{error} {error:?}").contains("wrong-pw"),
        "the password leaked: {error:?}"
    );

    let store = EtcdStore::open(&format!("etcd://root:s3cret-pw@{host}/app?timeout=2s"))
        .await
        .unwrap();
    store.put("k", b"v", PutOptions::default()).await.unwrap();
    assert!(!format!("{store:?}").contains("s3cret-pw"), "{store:?}");

    // The harness's etcd lets a token expire after 2 idle seconds (`--auth-token-ttl`; 5
    // minutes by default): an idle handle takes a new one instead of failing from then on.
    tokio::time::sleep(Duration::from_secs(4)).await;
    store.put("k", b"v2", PutOptions::default()).await.unwrap();
    assert_eq!(&store.get("k").await.unwrap().unwrap().value[..], b"v2");
}

/// Adds `user` with the root role and turns authentication on.
async fn enable_auth(endpoint: &str, user: &str, password: &str) {
    use kv_etcd::proto::etcdserverpb::{
        AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, auth_client::AuthClient,
    };
    let mut admin = AuthClient::connect(endpoint.to_owned()).await.unwrap();
    admin
        .user_add(AuthUserAddRequest {
            name: user.to_owned(),
            password: password.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .user_grant_role(AuthUserGrantRoleRequest {
            user: user.to_owned(),
            role: "root".to_owned(),
        })
        .await
        .unwrap();
    admin.auth_enable(AuthEnableRequest {}).await.unwrap();
}

#[tokio::test]
async fn values_over_the_limit_are_refused_before_sending() {
    let Some(server) = own_server() else { return };
    let store = EtcdStore::open(&format!("{}/big", server.url))
        .await
        .unwrap();
    let two_mib = vec![0u8; 2 * 1024 * 1024];
    assert!(matches!(
        store.put("k", &two_mib, PutOptions::default()).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert!(!store.exists("k").await.unwrap());
}

// Partitions, resets, a killed and restarted server, a paused one: every case of
// `conformance::faults`, against servers of their own.
conformance::fault_tests!(
    &conformance::servers::EtcdProcess,
    "/faults?timeout=1s",
    |url: String| async move { EtcdStore::open(&url).await }
);

/// A service's recipes through a 10 s etcd outage (killed, restarted on its data): both
/// instances' `Registration`s put their keys back and one `Election::run` leads again, within
/// the lease TTL + 2 s of etcd's return (issue 27's target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recipes_heal_after_a_10s_outage() {
    let Some(server) = own_server() else { return };
    let healed = conformance::faults::recipes_heal_after_an_outage(
        &server,
        "/recipes?timeout=1s",
        Duration::from_secs(10),
        |url: String| async move { EtcdStore::open(&url).await },
    )
    .await;
    eprintln!("etcd, recipes after a 10 s outage: {healed:?}");
    let bound = healed.ttl + Duration::from_secs(2);
    assert!(
        healed.registered <= bound && healed.leading <= bound,
        "registered again after {:?}, leading after {:?}: over TTL + 2 s ({bound:?})",
        healed.registered,
        healed.leading
    );
}

/// A member that cannot be reached is named in the error (tonic's own text does not say
/// where it tried), once.
#[tokio::test]
async fn an_unreachable_member_is_named_in_the_error() {
    let refused = conformance::servers::free_port().unwrap();
    let error = EtcdStore::open(&format!("etcd://127.0.0.1:{refused}/x?timeout=1s"))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert_eq!(
        text.matches(&format!("127.0.0.1:{refused}")).count(),
        1,
        "{text}"
    );
}
