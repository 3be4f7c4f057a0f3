//! kv-etcd
