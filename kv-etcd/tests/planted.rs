//! The robustness runner's self-test: each bug planted in kv-etcd behind a failpoint
//! (`kv_core::failpoint`) must make a run fail within 20 runs under faults. Ignored by default
//! (minutes each); `scripts/robustness --planted` runs them one at a time (a failpoint is armed
//! for the whole process).

use kv_etcd::EtcdStore;

const RUNS: usize = 20;

async fn caught(failpoint: &str) {
    let _armed = kv_core::failpoint::arm(failpoint);
    let caught = conformance::robustness::until_caught(
        &conformance::servers::EtcdProcess,
        "/robustness?timeout=1s",
        RUNS,
        |url: String| async move { EtcdStore::open(&url).await },
    )
    .await;
    match caught {
        Some((run, report)) => eprintln!("planted bug {failpoint}: caught in run {run}: {report}"),
        None => panic!("planted bug {failpoint}: not caught in {RUNS} runs"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the robustness self-test: scripts/robustness --planted"]
async fn a_put_sent_again_after_a_timeout_is_caught() {
    caught("put-retry-after-timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the robustness self-test: scripts/robustness --planted"]
async fn a_watch_resumed_at_the_last_version_is_caught() {
    caught("watch-resume-at-last").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the robustness self-test: scripts/robustness --planted"]
async fn a_watch_dropping_an_event_on_reconnect_is_caught() {
    caught("watch-drop-on-reconnect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the robustness self-test: scripts/robustness --planted"]
async fn a_lock_trusting_its_waiting_lease_is_caught() {
    caught("lock-skip-lease-recheck").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the robustness self-test: scripts/robustness --planted"]
async fn a_sent_write_reported_unavailable_is_caught() {
    caught("write-unavailable-after-send").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the robustness self-test: scripts/robustness --planted"]
async fn a_list_read_key_by_key_is_caught() {
    caught("list-key-by-key").await;
}
