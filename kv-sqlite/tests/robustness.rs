//! Random traffic from several handles on one database file and from client processes of their
//! own, which are killed (SIGKILL) and paused past their lock's TTL; the history checked
//! (`conformance::robustness`). SQLite has no server to cut off: its faults are its clients'.

use kv_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_on_one_file_is_linearizable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("kv.db").display());
    let config = conformance::robustness::Config::from_env(10);
    conformance::robustness::run_embedded("sqlite", &url, config, |url: String| async move {
        SqliteStore::open(&url).await
    })
    .await;
}

/// Does nothing, except in a client process the runner started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robustness_client_process() {
    conformance::robustness::process::child(
        |url: String| async move { SqliteStore::open(&url).await },
    )
    .await;
}
