//! The native layout (`layout=native`: values as plain strings where `redis-cli` looks): the
//! whole conformance suite with watches fed by keyspace notifications and, on a server without
//! them, by polling; and `redis-cli` on the other side of kv, both directions, watches included.
#![allow(clippy::unwrap_used)] // test helpers: a failed step panics with its context

#[path = "support/backend.rs"]
mod backend;

mod notified {
    conformance::conformance_tests!(super::backend::Redis {
        name: "redis-native",
        options: "&layout=native",
        notifications: true,
        with_client: false,
    });
}

mod polled {
    conformance::conformance_tests!(super::backend::Redis {
        name: "redis-native-polled",
        options: "&layout=native",
        notifications: false,
        with_client: false,
    });
}

use std::time::Duration;

use conformance::native::{self, redis_cli};
use kv_core::{Error, EventKind, Precondition, PutOptions, Store, WatchOptions};
use kv_redis::RedisStore;

fn cli(url: &str, args: &[&str]) -> String {
    String::from_utf8(redis_cli(url, args))
        .unwrap()
        .trim()
        .to_owned()
}

/// kv and `redis-cli` on the same keys. The watch polls only once an hour, so every event it
/// delivers came through keyspace notifications.
#[tokio::test]
async fn redis_cli_and_kv_share_keys() {
    let url = backend::notifying_server_url();
    let root = conformance::random_name();
    let store = RedisStore::open(&format!("{url}?root={root}&layout=native&poll=1h"))
        .await
        .unwrap();
    let name = |key: &str| format!("{root}/{key}");
    let mut watch = store
        .watch_tree("app", WatchOptions::default())
        .await
        .unwrap();

    // kv → redis-cli: a plain string; a TTL is Redis's own.
    store
        .put("app/color", b"blue", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(cli(&url, &["GET", &name("app/color")]), "\"blue\"");
    store
        .put(
            "app/session",
            b"s",
            PutOptions::default().ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let ttl: i64 = cli(&url, &["PTTL", &name("app/session")])
        .trim_start_matches("(integer) ")
        .parse()
        .unwrap();
    assert!((1..=60_000).contains(&ttl), "{ttl}");

    // redis-cli → kv, and a version that moves when another tool changes the value: a CAS on
    // the version read before that change fails.
    cli(&url, &["SET", &name("app/size"), "10"]);
    let before = store.get("app/size").await.unwrap().unwrap();
    assert_eq!(&before.value[..], b"10");
    cli(&url, &["SET", &name("app/size"), "11"]);
    let after = store.get("app/size").await.unwrap().unwrap();
    assert!(after.version > before.version, "{before:?} → {after:?}");
    assert!(matches!(
        store
            .atomic_put(
                "app/size",
                b"12",
                Precondition::Version(before.version),
                PutOptions::default()
            )
            .await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        native::keys(&store.list("app").await.unwrap()),
        ["app/color", "app/session", "app/size"]
    );

    // The watch hears redis-cli's writes, deletes and Redis's own expiries.
    cli(&url, &["SET", &name("app/color"), "red"]);
    cli(&url, &["DEL", &name("app/size")]);
    cli(&url, &["SET", &name("app/brief"), "b", "PX", "200"]);
    let seen = native::events_until(&mut watch, |seen| {
        native::saw(seen, EventKind::Delete, "app/brief")
    })
    .await;
    for expected in [
        (EventKind::Put, "app/color", &b"red"[..]),
        (EventKind::Delete, "app/size", b""),
        (EventKind::Put, "app/brief", b"b"),
    ] {
        let expected = (expected.0, expected.1.to_owned(), expected.2.to_vec());
        assert!(seen.contains(&expected), "{expected:?} in {seen:?}");
    }
    store.delete_tree("").await.unwrap();
}
