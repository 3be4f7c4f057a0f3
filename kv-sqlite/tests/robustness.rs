//! Random traffic from several handles on one database file (as from several processes), the
//! history checked for per-key linearizability (`conformance::robustness`). No faults yet:
//! SQLite has no server to cut off.

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
