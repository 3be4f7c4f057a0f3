//! The whole conformance suite against a real Redis, started by the harness (or
//! `KV_TEST_REDIS_URL`); each case under its own random root.

#[path = "support/backend.rs"]
mod backend;

conformance::conformance_tests!(backend::Redis {
    name: "redis",
    options: "",
    notifications: false,
    with_client: false,
});

/// The suite again over a `redis::Client` the test built (`RedisOptions::with_client`).
mod with_client {
    conformance::conformance_tests!(super::backend::Redis {
        name: "redis-with-client",
        options: "",
        notifications: false,
        with_client: true,
    });
}
