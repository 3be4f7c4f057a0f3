//! The open/closed state of a store handle and the checks every call makes first.

use std::ops::Deref;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::key::{normalize, normalize_key};
use crate::types::WatchOptions;

/// Whether a store handle is open, shared by the handle, its watches and its locks. Every
/// `Store` method starts with [`HandleState::key`], [`HandleState::prefix`] or
/// [`HandleState::check_open`]; `close` cancels the token, which ends watches and lock waits.
#[derive(Debug, Clone, Default)]
pub struct HandleState(CancellationToken);

impl HandleState {
    /// [`Error::Closed`] once the handle is closed.
    pub fn check_open(&self) -> Result<()> {
        if self.0.is_cancelled() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Closes the handle: `true` the first time, when the caller lets go of what the handle
    /// holds; `false` if it was closed already (a second `close()` does nothing).
    pub fn begin_close(&self) -> bool {
        let first = !self.0.is_cancelled();
        self.0.cancel();
        first
    }

    /// Checks the handle is open and returns the normalized key ([`normalize_key`]).
    pub fn key<'a>(&self, key: &'a str) -> Result<&'a str> {
        self.check_open()?;
        normalize_key(key)
    }

    /// Checks the handle is open and returns the normalized prefix ([`normalize`]).
    pub fn prefix<'a>(&self, prefix: &'a str) -> Result<&'a str> {
        self.check_open()?;
        normalize(prefix)
    }

    /// Checks the handle is open and returns what a watch with `options` watches: the
    /// normalized prefix of a [`WatchOptions::tree`] watch, else the normalized key.
    pub fn watched<'a>(&self, target: &'a str, options: &WatchOptions) -> Result<&'a str> {
        match options.tree {
            true => self.prefix(target),
            false => self.key(target),
        }
    }
}

/// The token that fires on close.
impl Deref for HandleState {
    type Target = CancellationToken;

    fn deref(&self) -> &CancellationToken {
        &self.0
    }
}
