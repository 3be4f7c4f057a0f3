//! kv-memory
