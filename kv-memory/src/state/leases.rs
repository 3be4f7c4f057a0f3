//! Key leases: granted to a handle, renewed, attached by id, revoked (with their keys).

use super::*;

impl State {
    /// The expiry of key lease `id`, or `LeaseLost` if it has ended.
    pub(super) fn live_lease(&self, id: u64, now: &Now) -> Result<Instant> {
        self.key_leases
            .get(&id)
            .map(|lease| lease.expires_at)
            .filter(|at| *at > now.get())
            .ok_or_else(|| Error::LeaseLost { id: id.to_string() })
    }

    /// Grants a key lease of `ttl` to handle `owner`.
    pub fn grant(
        &mut self,
        ttl: Duration,
        owner: u64,
        now: Instant,
    ) -> Result<(u64, CancellationToken)> {
        let expires_at = now
            .checked_add(ttl)
            .ok_or_else(|| Error::invalid_argument(format!("lease TTL {ttl:?} is too large")))?;
        let id = self.next_id();
        let lost = CancellationToken::new();
        self.key_leases.insert(
            id,
            KeyLease {
                ttl,
                expires_at,
                keys: hashbrown::HashSet::new(),
                owner,
                lost: lost.clone(),
            },
        );
        self.add_timer(expires_at, Timer::KeyLease { id });
        Ok((id, lost))
    }

    /// Extends key lease `id` and its keys by its TTL; false if it has ended (it is then
    /// revoked: its keys go and `lost` fires).
    pub fn renew_key_lease(&mut self, id: u64, now: Instant) -> Result<bool> {
        let Some(lease) = self.key_leases.get_mut(&id) else {
            return Ok(false);
        };
        if lease.expires_at <= now {
            self.revoke(id)?;
            return Ok(false);
        }
        let Some(expires_at) = now.checked_add(lease.ttl) else {
            return Ok(true);
        };
        let keys: Vec<Key> = lease.keys.iter().cloned().collect();
        for key in &keys {
            if let (Some(journal), Some(entry)) = (&self.journal, self.entries.get(key)) {
                journal.put(
                    key,
                    &entry.value,
                    entry.version,
                    Some(to_system_time(expires_at)),
                )?;
            }
        }
        for key in &keys {
            if let Some(entry) = self.entries.get_mut(key) {
                entry.expires_at = Some(expires_at);
            }
        }
        if let Some(lease) = self.key_leases.get_mut(&id) {
            lease.expires_at = expires_at;
        }
        self.add_timer(expires_at, Timer::KeyLease { id });
        Ok(true)
    }

    /// Renews key lease `id` for a handle that takes it up: its TTL and `lost`, or `None` if
    /// it has ended.
    pub fn attach(
        &mut self,
        id: u64,
        now: Instant,
    ) -> Result<Option<(Duration, CancellationToken)>> {
        if !self.renew_key_lease(id, now)? {
            return Ok(None);
        }
        Ok(self
            .key_leases
            .get(&id)
            .map(|lease| (lease.ttl, lease.lost.clone())))
    }

    /// Ends key lease `id`: `lost` fires, then its keys are deleted (Delete events). False if
    /// it had already ended.
    pub fn revoke(&mut self, id: u64) -> Result<bool> {
        let Some(lease) = self.key_leases.remove(&id) else {
            return Ok(false);
        };
        lease.lost.cancel();
        let mut keys: Vec<Key> = lease.keys.into_iter().collect();
        keys.sort();
        for key in keys {
            if self.entries.get(&key).is_some_and(|e| e.lease == Some(id)) {
                self.remove_entry(key.as_str())?;
            }
        }
        Ok(true)
    }

    /// Revokes every key lease granted through handle `owner` (which is closing).
    pub fn revoke_owner(&mut self, owner: u64) -> Result<()> {
        let ids: Vec<u64> = self
            .key_leases
            .iter()
            .filter(|(_, lease)| lease.owner == owner)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.revoke(id)?;
        }
        Ok(())
    }
}
