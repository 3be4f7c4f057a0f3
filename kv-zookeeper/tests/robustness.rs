//! Random traffic from several handles under random faults, every history checked for per-key
//! linearizability (`conformance::robustness`), against a server of this test's own.

use kv_zookeeper::ZooKeeperStore;

conformance::robustness_tests!(
    &conformance::servers::ZooKeeperProcess,
    "/robustness?timeout=1s&session_timeout=6s",
    10,
    |url: String| async move { ZooKeeperStore::open(&url).await },
    kills = true
);
