//! Locks: taken when nothing conflicts, renewed, released, expired, and who holds one.

use super::*;

/// A granted lock.
pub(crate) struct Grant {
    pub lease: u64,
    pub token: u64,
    pub lost: CancellationToken,
}

/// A lock request.
pub(crate) struct LockRequest<'a> {
    pub key: &'a Key,
    pub scope: LockScope,
    pub ttl: Duration,
    pub value: &'a Bytes,
    pub owner: u64,
}

impl State {
    /// Takes the lock if nothing conflicts (expired leases in the way are expired first).
    pub fn try_lock(&mut self, request: &LockRequest<'_>, now: Instant) -> Result<Option<Grant>> {
        let path = request.key.as_str();
        let subtree = request.scope == LockScope::Subtree;
        self.expire_due_locks(path, subtree, now);
        if self.lock_conflict(path, subtree) {
            return Ok(None);
        }
        let Some(deadline) = now.checked_add(request.ttl) else {
            return Ok(None);
        };
        let token = self.revision + 1;
        if let Some(journal) = &self.journal {
            journal.advance(token)?;
        }
        self.revision = token;
        let lease = self.next_id();
        let lost = CancellationToken::new();
        let mut node = &mut self.root;
        for seg in segments(path) {
            node.locks_below += 1;
            node = node.find_or_create(seg);
        }
        node.lock = Some(Box::new(Holder {
            lease,
            token,
            scope: request.scope,
            value: request.value.clone(),
            ttl: request.ttl,
            deadline,
            lost: lost.clone(),
        }));
        self.leases.insert(
            lease,
            LeaseInfo {
                key: request.key.clone(),
                owner: request.owner,
            },
        );
        self.add_timer(deadline, Timer::Lease { lease });
        Ok(Some(Grant { lease, token, lost }))
    }

    /// True if a live lock on `path`, a subtree lock on an ancestor, or (for a subtree
    /// request) a lock below `path` is held.
    fn lock_conflict(&self, path: &str, subtree: bool) -> bool {
        let mut node = &self.root;
        for seg in segments(path) {
            if node
                .lock
                .as_ref()
                .is_some_and(|h| h.scope == LockScope::Subtree)
            {
                return true;
            }
            match node.children.get(seg) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.lock.is_some() || (subtree && node.locks_below > 0)
    }

    /// Expires the leases past their deadline that could conflict with a lock on `path`.
    fn expire_due_locks(&mut self, path: &str, subtree: bool, now: Instant) {
        let mut due = Vec::new();
        let mut node = Some(&self.root);
        for seg in segments(path) {
            node = node.and_then(|n| n.children.get(seg));
            if let Some(holder) = node.and_then(|n| n.lock.as_ref())
                && holder.deadline <= now
            {
                due.push(holder.lease);
            }
        }
        if subtree && let Some(node) = node {
            node.visit_locks(&mut |holder| {
                if holder.deadline <= now {
                    due.push(holder.lease);
                }
            });
        }
        for lease in due {
            self.expire_lease(lease);
        }
    }

    /// Extends the lease by its TTL; false if it is gone or already past its deadline (it is
    /// then expired, and its `lost` token fires).
    pub fn renew(&mut self, lease: u64, now: Instant) -> bool {
        let Some(info) = self.leases.get(&lease) else {
            return false;
        };
        let key = info.key.clone();
        let Some(holder) = self
            .root
            .find_mut(key.as_str())
            .and_then(|n| n.lock.as_mut())
            .filter(|h| h.lease == lease)
        else {
            return false;
        };
        if holder.deadline <= now {
            self.expire_lease(lease);
            return false;
        }
        let Some(deadline) = now.checked_add(holder.ttl) else {
            return true;
        };
        holder.deadline = deadline;
        self.add_timer(deadline, Timer::Lease { lease });
        true
    }

    /// Releases a lease; returns its holder if it was still held.
    pub fn release(&mut self, lease: u64) -> Option<Box<Holder>> {
        let info = self.leases.remove(&lease)?;
        let path = info.key.as_str();
        let node = self.root.find_mut(path)?;
        if node.lock.as_ref().map(|h| h.lease) != Some(lease) {
            return None;
        }
        let holder = node.lock.take();
        let mut node = &mut self.root;
        for seg in segments(path) {
            node.locks_below -= 1;
            node = node.children.get_mut(seg)?;
        }
        self.root.prune(path);
        holder
    }

    /// Releases a lease and fires its `lost` token.
    pub(super) fn expire_lease(&mut self, lease: u64) -> bool {
        match self.release(lease) {
            Some(holder) => {
                holder.lost.cancel();
                true
            }
            None => false,
        }
    }

    /// Releases every lease taken through handle `owner` (which is closing), firing `lost`.
    pub fn release_owner(&mut self, owner: u64) -> bool {
        let leases: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, info)| info.owner == owner)
            .map(|(lease, _)| *lease)
            .collect();
        let mut freed = false;
        for lease in leases {
            freed |= self.expire_lease(lease);
        }
        freed
    }

    pub fn holder(&self, key: &str, now: Instant) -> Option<LockHolder> {
        self.root
            .find(key)?
            .lock
            .as_ref()
            .filter(|h| h.deadline > now)
            .map(|h| LockHolder {
                value: h.value.clone(),
                fencing_token: h.token,
            })
    }
}
