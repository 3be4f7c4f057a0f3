//! Random traffic from several handles under random faults, every history checked for per-key
//! linearizability (`conformance::robustness`), against a server of this test's own.

use kv_redis::RedisStore;

conformance::robustness_tests!(
    &conformance::servers::DurableRedisProcess,
    "?root=robustness&timeout=1s",
    10,
    |url: String| async move { RedisStore::open(&url).await },
    kills = true
);
