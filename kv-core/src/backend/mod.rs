//! What a backend crate needs beyond the user-facing API: handle state, watch plumbing, the
//! shared lease keep-alive and retries, lock and lease handles, checked transactions. Users of
//! stores never need it; the `kv` facade re-exports it only as `kv::backend`.
//!
//! A backend crate declares itself with a [`Driver`] (its name, URL schemes, how to open
//! it and what tools need to know of it); the `kv` facade lists the drivers it compiles in.

mod driver;
mod holdings;
mod lock_guard;
mod reaper;

pub use crate::grant::{LeaseOps, Renewed, lease_number, lost_on_close, renewed_lease, upgraded};
pub use crate::handle::HandleState;
pub use crate::key::{LOCK_AREA, check_outside_lock_area};
pub use crate::lease::{keep_alive, lease_deadline, safety_margin, spawn_keep_alive};
pub use crate::lock::{LeaseHandle, ReleaseWith};
pub use crate::retry::{Budget, retry_idempotent};
pub use crate::txn::{CheckedTxn, TxnOp};
pub use crate::watch_channel::{WatchSender, initial_events, resume_watch, watch_channel};
pub use crate::watch_view::{Observed, WatchView};
pub use driver::{Driver, Locality, Opening, scratch_in_temp_dir};
pub use holdings::Holdings;
pub use lock_guard::LeasedLock;
pub use reaper::{REAP_AT_LEAST_EVERY, reap_expired};
