//! `kv::open_env`: `KV_STORE` when set, else the default. The environment is given to a child
//! run of this test binary (`open_env_child`), as a service's would be.
#![allow(clippy::unwrap_used)]

use kv::PutOptions;

/// Does nothing unless `KV_OPEN_ENV_EXPECT` is set (by the test below): then opens with
/// `open_env` and checks which store it got.
#[tokio::test]
async fn open_env_child() {
    let Ok(expect) = std::env::var("KV_OPEN_ENV_EXPECT") else {
        return;
    };
    let opened = kv::open_env("memory://env-default").await;
    match expect.as_str() {
        "invalid" => assert!(
            matches!(opened, Err(kv::Error::InvalidUrl { .. })),
            "{opened:?}"
        ),
        name => {
            let store = opened.unwrap();
            store
                .put("k", name.as_bytes(), PutOptions::default())
                .await
                .unwrap();
            let other = kv::open(&format!("memory://{name}")).await.unwrap();
            assert_eq!(
                other.get("k").await.unwrap().unwrap().value,
                name.as_bytes()
            );
        }
    }
}

#[test]
fn kv_store_names_the_store_else_the_default() {
    for (kv_store, expect) in [
        (None, "env-default"),
        (Some(""), "env-default"),
        (Some("memory://env-named"), "env-named"),
        (Some("nope://x"), "invalid"),
    ] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", "open_env_child", "--nocapture"]);
        child
            .env("KV_OPEN_ENV_EXPECT", expect)
            .env_remove("KV_STORE");
        if let Some(url) = kv_store {
            child.env("KV_STORE", url);
        }
        let status = child.status().unwrap();
        assert!(status.success(), "KV_STORE={kv_store:?}: the child failed");
    }
}
