//! Bugs planted on purpose, for the robustness runner's self-test (`conformance::robustness`):
//! a backend asks [`armed`] at the places where a known kind of bug would live, and behaves
//! wrongly when a test has armed that name. Without the `failpoints` feature (never enabled by
//! a normal build: only the self-test's dev-dependency turns it on) [`armed`] is a constant
//! `false` and the planted code is dead.
//!
//! The names, each caught by a checker of the runner:
//! - `put-retry-after-timeout`: a put whose answer was lost is sent again (a double apply);
//! - `watch-resume-at-last`: a resumed watch starts at the last version seen instead of the
//!   next (a duplicate event);
//! - `watch-drop-on-reconnect`: a resumed watch drops its first event (a gap);
//! - `lock-skip-lease-recheck`: a lock taken after waiting trusts its waiting lease as fresh
//!   (`lost()` fires too late: two holders);
//! - `write-unavailable-after-send`: a write whose answer was lost says nothing was applied;
//! - `list-key-by-key`: a list reads each key again on its own (not one snapshot).

/// Whether the failpoint `name` is armed.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn armed(_name: &str) -> bool {
    false
}

#[cfg(feature = "failpoints")]
static ARMED: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Whether the failpoint `name` is armed.
#[cfg(feature = "failpoints")]
pub fn armed(name: &str) -> bool {
    ARMED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|n| n == name)
}

/// Arms `name` in this process until the returned guard is dropped.
#[cfg(feature = "failpoints")]
pub fn arm(name: &str) -> Armed {
    ARMED
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push(name.to_owned());
    Armed(name.to_owned())
}

/// Disarms its failpoint when dropped.
#[cfg(feature = "failpoints")]
#[derive(Debug)]
pub struct Armed(String);

#[cfg(feature = "failpoints")]
impl Drop for Armed {
    fn drop(&mut self) {
        ARMED
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| n != &self.0);
    }
}
