//! The whole conformance suite against a real ZooKeeper, started by the harness (or
//! `KV_TEST_ZOOKEEPER_URL`); each case under its own random base path.

#[path = "support/backend.rs"]
mod backend;

conformance::conformance_tests!(backend::ZooKeeper {
    name: "zookeeper",
    options: "",
});
