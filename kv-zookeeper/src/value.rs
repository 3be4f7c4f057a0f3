//! One key's value: both value nodes read at once, rewrites in place, and the `multi`s that
//! create, replace or remove a value node (see the layout module for why there are two).

use std::time::Duration;

use kv_core::{Error, Precondition, Result};
use zookeeper_client as zk;

use std::collections::HashSet;

use crate::layout::{Stored, hollow_mark, now_ms};
use crate::lease::{self, LeaseSession};
use crate::{Inner, map_error, map_write_error, timed_raw, version_of};

/// Attempts before a write that keeps losing races gives up.
const ATTEMPTS: usize = 16;
/// Keys whose last conditional write a handle remembers, at most.
const MAX_KNOWN: usize = 10_000;

/// What one of this handle's conditional writes left on a permanent value: enough to send the
/// next CAS on that version without reading first, as `check(epoch) + setData(data version)`
/// (one round trip, as a raw conditional `setData`). Remembered only as long as the epoch
/// cannot have been reclaimed and grown back to the same version: `reclaim_after` less the
/// longest the write itself and the next one can take.
#[derive(Debug, Clone, Copy)]
struct Written {
    version: u64,
    data_version: i32,
    epoch: i32,
    at: std::time::Instant,
}

/// The handle's remembered writes (see [`Written`]).
pub(crate) struct Known {
    writes: std::sync::Mutex<std::collections::HashMap<String, Written>>,
    /// How long a write stays usable; zero turns the memory off.
    fresh_for: Duration,
}

impl Known {
    /// A memory whose entries last `fresh_for`.
    pub fn new(fresh_for: Duration) -> Known {
        Known {
            writes: Default::default(),
            fresh_for,
        }
    }

    fn get(&self, key: &str, version: u64) -> Option<Written> {
        let writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        writes
            .get(key)
            .filter(|w| w.version == version && w.at.elapsed() < self.fresh_for)
            .copied()
    }

    fn record(&self, key: &str, written: Written) {
        if self.fresh_for.is_zero() {
            return;
        }
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if writes.len() >= MAX_KNOWN && !writes.contains_key(key) {
            writes.clear();
        }
        writes.insert(key.to_owned(), written);
    }

    pub fn forget(&self, key: &str) {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// One value node of a key.
#[derive(Clone)]
pub(crate) struct Node {
    pub path: String,
    pub stored: Stored,
    pub stat: zk::Stat,
}

/// What one read of a key found: its directory's and epoch node's stats (read for a write)
/// and its value nodes (normally at most one).
pub(crate) struct KeyState {
    pub dir: Option<zk::Stat>,
    pub epoch: Option<zk::Stat>,
    pub nodes: Vec<Node>,
}

impl KeyState {
    /// The node that holds the key's value now, unless its TTL has passed.
    pub fn live(&self) -> Option<&Node> {
        let newest = self.nodes.iter().max_by_key(|n| n.stat.mzxid)?;
        (!newest.stored.expired(now_ms())).then_some(newest)
    }

    /// `Conflict` unless the key's live value has exactly version `expected`.
    fn check_version(&self, key: &str, expected: u64) -> Result<()> {
        match self.live() {
            Some(node) if version_of(node.stat.mzxid) == expected => Ok(()),
            Some(node) => Err(Error::conflict(
                key,
                format!(
                    "expected version {expected}, found {}",
                    version_of(node.stat.mzxid)
                ),
            )),
            None => Err(Error::conflict(key, "the key does not exist")),
        }
    }
}

/// How a removal ended.
pub(crate) enum Removal {
    /// The key's value node(s) were removed; `live` if the value had not expired.
    Removed { live: bool },
    /// There was nothing to remove.
    Absent,
}

impl Inner {
    /// Reads a key's directory and both value nodes in one round trip.
    pub async fn read_key(&self, client: &zk::Client, key: &str) -> Result<KeyState> {
        self.read_nodes(client, key, true).await
    }

    /// [`Inner::read_key`] for a write, after its member has caught up with the leader (with
    /// `sync_reads`; pipelined, no extra round trip): a precondition checked against a
    /// member's stale state could refuse a write whose condition held (found by the
    /// robustness runs on an ensemble: `cas absent` refused after the key's delete had been
    /// acknowledged and read by others).
    async fn read_key_to_write(&self, client: &zk::Client, key: &str) -> Result<KeyState> {
        self.caught_up(client, self.read_key(client, key)).await
    }

    /// Reads both value nodes of a key (not its directory, which a point read does not need)
    /// in one round trip.
    pub async fn read_value(&self, client: &zk::Client, key: &str) -> Result<KeyState> {
        self.read_nodes(client, key, false).await
    }

    async fn read_nodes(&self, client: &zk::Client, key: &str, with_dir: bool) -> Result<KeyState> {
        if self.layout.native() {
            return self.read_node(client, key).await;
        }
        let paths = [
            self.layout.dir(key),
            self.layout.epoch(key),
            self.layout.value(key, false),
            self.layout.value(key, true),
        ];
        let first = if with_dir { 0 } else { 2 };
        let mut reader = client.new_multi_reader();
        for path in &paths[first..] {
            reader.add_get_data(path).map_err(|e| map_error("get", e))?;
        }
        let results = match timed_raw("get", self.timeout, reader.commit()).await? {
            Ok(results) => results,
            Err(error) => return Err(map_error("get", error)),
        };
        let mut state = KeyState {
            dir: None,
            epoch: None,
            nodes: Vec::new(),
        };
        let asked = paths.into_iter().enumerate().skip(first);
        for ((index, path), result) in asked.zip(results) {
            match result {
                zk::MultiReadResult::Data { stat, .. } if index == 0 => state.dir = Some(stat),
                zk::MultiReadResult::Data { stat, .. } if index == 1 => state.epoch = Some(stat),
                zk::MultiReadResult::Data { data, stat } => state.nodes.push(Node {
                    path,
                    stored: Stored::decode(data),
                    stat,
                }),
                zk::MultiReadResult::Error {
                    err: zk::Error::NoNode,
                } => {}
                zk::MultiReadResult::Error { err } => return Err(map_error("get", err)),
                _ => {}
            }
        }
        Ok(state)
    }

    /// Reads a key's own node (native layout): its stat as `dir`, and itself as the value node
    /// if it is a key (not a path segment, not hollow).
    async fn read_node(&self, client: &zk::Client, key: &str) -> Result<KeyState> {
        let path = self.layout.dir(key);
        let (data, stat) = match timed_raw("get", self.timeout, client.get_data(&path)).await? {
            Ok(found) => found,
            Err(zk::Error::NoNode) => {
                return Ok(KeyState {
                    dir: None,
                    epoch: None,
                    nodes: Vec::new(),
                });
            }
            Err(error) => return Err(map_error("get", error)),
        };
        let hollow = self.hollow(client, &[(path.clone(), stat)]).await?;
        let stored = match hollow.is_empty() {
            true => self.layout.stored(data, &stat),
            false => None,
        };
        Ok(KeyState {
            nodes: stored
                .map(|stored| Node { path, stored, stat })
                .into_iter()
                .collect(),
            dir: Some(stat),
            epoch: None,
        })
    }

    /// Of these nodes of the native layout, the hollow ones: emptied keys whose marker holds
    /// their `czxid:version`. Only emptied nodes that were written are looked up (one
    /// batched read, none when there is no such node).
    pub async fn hollow(
        &self,
        client: &zk::Client,
        nodes: &[(String, zk::Stat)],
    ) -> Result<HashSet<String>> {
        let candidates: Vec<(&String, &zk::Stat, String)> = nodes
            .iter()
            .filter(|(_, stat)| stat.version > 0 && stat.data_length == 0)
            .filter_map(|(path, stat)| {
                let key = self.layout.key_of_dir(path)?;
                Some((path, stat, self.layout.hollow_marker(&key)))
            })
            .collect();
        if candidates.is_empty() {
            return Ok(HashSet::new());
        }
        let markers: Vec<String> = candidates.iter().map(|(_, _, m)| m.clone()).collect();
        let read = crate::batch::read_many(self, client, &markers, false).await?;
        Ok(candidates
            .into_iter()
            .zip(read)
            .filter_map(|((path, stat, _), result)| match result {
                zk::MultiReadResult::Data { data, .. } if data == hollow_mark(stat) => {
                    Some(path.clone())
                }
                _ => None,
            })
            .collect())
    }

    /// Writes a value if the options' precondition holds; returns the new version. A permanent
    /// value that replaces a permanent value is rewritten in place (one round trip without
    /// precondition); anything else replaces the value node in one `multi`.
    pub async fn write(
        &self,
        key: &str,
        value: &[u8],
        options: &kv_core::PutOptions,
    ) -> Result<u64> {
        let precondition = options.precondition;
        let lease = options.lease.as_ref().map(lease::session_of).transpose()?;
        if let Some(lease) = &lease {
            lease.client()?;
        }
        let written = self
            .try_write(key, value, precondition, options.ttl, lease.as_deref())
            .await;
        if let Err(error) = &written
            && !matches!(error, Error::Conflict { .. })
            && let Ok(client) = self.client().await
        {
            // A refused write leaves no directory behind (they are pruned only when empty).
            self.prune(&client, self.layout.dir(key)).await;
        }
        written
    }

    /// A write; with `lease`, the value node is an ephemeral node of the lease's session, at
    /// the second value name (as a TTL value).
    async fn try_write(
        &self,
        key: &str,
        value: &[u8],
        precondition: Option<Precondition>,
        ttl: Option<Duration>,
        lease: Option<&LeaseSession>,
    ) -> Result<u64> {
        self.capabilities.check_value(value.len())?;
        let ttl = ttl.map(|t| self.checked_ttl(t)).transpose()?;
        let client = self.client().await?;
        if self.layout.native() {
            return self.write_node(&client, key, value, precondition).await;
        }
        let target = self.layout.value(key, ttl.is_some() || lease.is_some());
        let expires_ms = ttl.map(|t| now_ms().saturating_add(t.as_millis() as u64));
        let data = Stored::encode(value, expires_ms);
        // The node's owner: the lease's session (ephemeral), else none.
        let owner = lease.map_or(0, |l| l.session_id);
        let permanent = ttl.is_none() && lease.is_none();
        if let (Some(Precondition::Version(expected)), true) = (precondition, permanent)
            && let Some(known) = self.known.get(key, expected)
        {
            // A CAS on the version of this handle's own last write: no read.
            let sent = std::time::Instant::now();
            let mut multi = client.new_multi_writer();
            multi
                .add_check_version(&self.layout.epoch(key), known.epoch)
                .and_then(|()| multi.add_set_data(&target, &data, Some(known.data_version)))
                .map_err(|e| map_error("put", e))?;
            let written = self.commit_write("put", multi).await;
            self.known.forget(key);
            if let Some(version) = written? {
                let data_version = known.data_version + 1;
                let next = Written {
                    version,
                    data_version,
                    at: sent,
                    ..known
                };
                self.known.record(key, next);
                return Ok(version);
            }
            // Changed since: the read below tells a conflict from a success.
        }
        if precondition.is_none() && permanent {
            match timed_raw("put", self.timeout, client.set_data(&target, &data, None)).await? {
                Ok(stat) => return Ok(version_of(stat.mzxid)),
                Err(zk::Error::NoNode) => {}
                Err(error) => return Err(map_write_error("put", error)),
            }
        }
        // A write that keeps losing races tries again at once ATTEMPTS times, then with
        // growing pauses until the call's budget is spent: an unconditional put racing other
        // writers and deletes must get through, not give up after a few milliseconds.
        let mut budget = kv_core::backend::Budget::new(self.timeout);
        while budget.attempt(ATTEMPTS).await {
            let state = self.read_key_to_write(&client, key).await?;
            if state.dir.is_none() {
                self.make_dirs(&client, &self.layout.dir(key)).await?;
                continue;
            }
            match precondition {
                Some(Precondition::Version(expected)) => state.check_version(key, expected)?,
                Some(Precondition::MustNotExist) if state.live().is_some() => {
                    return Err(Error::conflict(key, "the key exists"));
                }
                _ => {}
            }
            let written = match state.nodes.as_slice() {
                // Rewritten in place: same node, same owner (a write keeps the node's owner).
                [only]
                    if only.path == target
                        && ttl.is_none()
                        && only.stat.ephemeral_owner == owner =>
                {
                    // A plain put needs no version: only a precondition does (an unconditional
                    // put that lost the race to another in-place write would otherwise go
                    // round again, and under contention give up). A conditional one also
                    // checks the epoch: the node may be a new one, back at the version read.
                    match precondition {
                        None => {
                            let set = client.set_data(&target, &data, None);
                            match timed_raw("put", self.timeout, set).await? {
                                Ok(stat) => Some(version_of(stat.mzxid)),
                                Err(zk::Error::NoNode) => None,
                                Err(error) => return Err(map_write_error("put", error)),
                            }
                        }
                        Some(_) => {
                            let sent = std::time::Instant::now();
                            let mut multi = client.new_multi_writer();
                            self.add_epoch(&mut multi, key, state.epoch.as_ref(), false)
                                .and_then(|()| {
                                    multi.add_set_data(&target, &data, Some(only.stat.version))
                                })
                                .map_err(|e| map_error("put", e))?;
                            let written = self.commit_write("put", multi).await?;
                            if let Some(version) = written {
                                self.known.record(
                                    key,
                                    Written {
                                        version,
                                        data_version: only.stat.version + 1,
                                        epoch: state.epoch.map_or(0, |e| e.version),
                                        at: sent,
                                    },
                                );
                            }
                            written
                        }
                    }
                }
                _ => match lease {
                    Some(lease) => {
                        let options = self.ephemeral_options();
                        let on = lease.client()?;
                        lease.created(target.clone());
                        self.replace(&on, key, &state, &target, &data, &options)
                            .await?
                    }
                    None => {
                        let sent = std::time::Instant::now();
                        let options = self.value_options(ttl);
                        let written = self
                            .replace(&client, key, &state, &target, &data, &options)
                            .await?;
                        if let (Some(version), true) = (written, permanent) {
                            // A new node at data version 0; the epoch bumped from the one read
                            // (created and set to 1 if there was none).
                            self.known.record(
                                key,
                                Written {
                                    version,
                                    data_version: 0,
                                    epoch: state.epoch.map_or(1, |e| e.version + 1),
                                    at: sent,
                                },
                            );
                        }
                        written
                    }
                },
            };
            if let Some(version) = written {
                return Ok(version);
            }
            // Someone else changed the key between the read and the write: read again (a
            // changed version then fails the precondition).
        }
        Err(Error::unavailable(
            format!("the write of {key} kept racing with other writers; try again"),
            None,
        ))
    }

    /// Replaces the key's value nodes by a new `target` node in one `multi` that also bumps
    /// the key's epoch; `None` if anything changed since they were read. The other value
    /// name, if it was not read, is created and deleted in the same `multi` (a check that it
    /// is still absent): a write that read the key empty must not land beside a value node
    /// created meanwhile, even under an epoch that was reclaimed and grew back to the version
    /// read.
    async fn replace(
        &self,
        client: &zk::Client,
        key: &str,
        state: &KeyState,
        target: &str,
        data: &[u8],
        options: &zk::CreateOptions<'_>,
    ) -> Result<Option<u64>> {
        let mut multi = client.new_multi_writer();
        let mut add = || -> std::result::Result<(), zk::Error> {
            self.add_epoch(&mut multi, key, state.epoch.as_ref(), true)?;
            for node in &state.nodes {
                multi.add_delete(&node.path, Some(node.stat.version))?;
            }
            multi.add_create(target, data, options)?;
            for ttl in [false, true] {
                let other = self.layout.value(key, ttl);
                if other != target && !state.nodes.iter().any(|n| n.path == other) {
                    self.add_absent(&mut multi, &other)?;
                }
            }
            Ok(())
        };
        add().map_err(|e| map_error("put", e))?;
        self.commit_write("put", multi).await
    }

    /// Adds a key's epoch guard to a `multi` (default layout): the epoch node must be as read;
    /// with `bump` (the `multi` creates a value node) its version goes up. An epoch that was
    /// not there is created, which fails if another write created it since.
    pub(crate) fn add_epoch(
        &self,
        multi: &mut zk::MultiWriter<'_>,
        key: &str,
        epoch: Option<&zk::Stat>,
        bump: bool,
    ) -> std::result::Result<(), zk::Error> {
        let path = self.layout.epoch(key);
        match (epoch, bump) {
            (Some(stat), false) => multi.add_check_version(&path, stat.version),
            (Some(stat), true) => multi.add_set_data(&path, &[], Some(stat.version)),
            (None, bump) => {
                multi.add_create(&path, &[], &self.value_options(None))?;
                match bump {
                    true => multi.add_set_data(&path, &[], Some(0)),
                    false => Ok(()),
                }
            }
        }
    }

    /// Adds a check that `path` does not exist to a `multi`: it is created and deleted again.
    pub(crate) fn add_absent(
        &self,
        multi: &mut zk::MultiWriter<'_>,
        path: &str,
    ) -> std::result::Result<(), zk::Error> {
        multi.add_create(path, &[], &self.value_options(None))?;
        multi.add_delete(path, Some(0))
    }

    /// Commits a write's `multi`: its version, or `None` if a node it checks changed since it
    /// was read (read again).
    async fn commit_write(
        &self,
        operation: &'static str,
        mut multi: zk::MultiWriter<'_>,
    ) -> Result<Option<u64>> {
        match timed_raw(operation, self.timeout, multi.commit())
            .await?
            .map_err(zk::Error::from)
        {
            Ok(results) => Self::multi_version(results),
            Err(zk::Error::BadVersion | zk::Error::NoNode | zk::Error::NodeExists) => Ok(None),
            Err(error) => Err(map_write_error(operation, error)),
        }
    }

    /// The version a committed `multi` wrote: its zxid, which every operation of a `multi`
    /// shares, from a `setData` answer (the epoch's or the value's) (or a create's stat, which some servers
    /// leave empty inside a multi). Never read back from the node: a concurrent delete may have
    /// removed it already, and the write must not then be taken for one that did not happen
    /// (and sent again: applied twice).
    fn multi_version(results: Vec<zk::MultiWriteResult>) -> Result<Option<u64>> {
        results
            .into_iter()
            .find_map(|r| match r {
                zk::MultiWriteResult::SetData { stat } => Some(stat.mzxid),
                zk::MultiWriteResult::Create { stat, .. } if !stat.is_invalid() => Some(stat.mzxid),
                _ => None,
            })
            .map(|mzxid| Some(version_of(mzxid)))
            .ok_or_else(|| {
                Error::Backend("ZooKeeper answered a committed multi without a version".into())
            })
    }

    /// A write in the native layout: the value is the key's own node's data (no TTL there).
    /// An existing node (a key, a path segment, a hollow key) is rewritten with a conditional
    /// `setData`, its hollow marker removed in the same `multi`; a new key is created with its
    /// parents and set once in the same `multi`, so every key's node is at data version 1 or
    /// more.
    async fn write_node(
        &self,
        client: &zk::Client,
        key: &str,
        value: &[u8],
        precondition: Option<Precondition>,
    ) -> Result<u64> {
        let path = self.layout.dir(key);
        let options = self.value_options(None);
        for _ in 0..ATTEMPTS {
            let state = self.read_key_to_write(client, key).await?;
            match precondition {
                Some(Precondition::Version(expected)) => state.check_version(key, expected)?,
                Some(Precondition::MustNotExist) if state.live().is_some() => {
                    return Err(Error::conflict(key, "the key exists"));
                }
                _ => {}
            }
            if state.dir.is_none()
                && let Some(at) = path.rfind('/')
            {
                self.make_dirs(client, &path[..at]).await?;
            }
            let mut multi = client.new_multi_writer();
            let mut add = || -> std::result::Result<(), zk::Error> {
                match &state.dir {
                    Some(stat) => {
                        if stat.version > 0 && state.nodes.is_empty() {
                            // Hollow: its marker goes with the new value.
                            multi.add_delete(&self.layout.hollow_marker(key), None)?;
                        }
                        multi.add_set_data(&path, value, Some(stat.version))
                    }
                    None => {
                        // Created empty, then set: the value travels once.
                        multi.add_create(&path, &[], &options)?;
                        multi.add_set_data(&path, value, Some(0))
                    }
                }
            };
            add().map_err(|e| map_error("put", e))?;
            let results = match timed_raw("put", self.timeout, multi.commit())
                .await?
                .map_err(zk::Error::from)
            {
                Ok(results) => results,
                // Changed since the read: read again (a changed version then fails the
                // precondition).
                Err(zk::Error::BadVersion | zk::Error::NoNode | zk::Error::NodeExists) => continue,
                Err(error) => return Err(map_write_error("put", error)),
            };
            let written = results.into_iter().rev().find_map(|r| match r {
                zk::MultiWriteResult::SetData { stat } => Some(version_of(stat.mzxid)),
                _ => None,
            });
            if let Some(version) = written {
                return Ok(version);
            }
        }
        Err(Error::unavailable(
            format!("the write of {key} kept racing with other writers; try again"),
            None,
        ))
    }

    /// Removes a key's value in the native layout: its node is emptied and marked hollow in
    /// one `multi` (the reclaimer deletes it later if it has no children: deleted now, it could
    /// be created again at the version a write in flight read). `None` if the key changed
    /// since `state` was read.
    async fn remove_node(
        &self,
        client: &zk::Client,
        key: &str,
        state: &KeyState,
    ) -> Result<Option<()>> {
        let (Some(stat), Some(node)) = (&state.dir, state.nodes.first()) else {
            return Ok(Some(()));
        };
        let path = &node.path;
        let mut multi = client.new_multi_writer();
        let marker = self.layout.hollow_marker(key);
        self.make_dirs(client, &self.layout.hollow_dir()).await?;
        let stale = crate::timed("delete", self.timeout, client.check_stat(&marker)).await?;
        let emptied = zk::Stat {
            version: stat.version + 1,
            ..*stat
        };
        let mark = hollow_mark(&emptied);
        let options = self.value_options(None);
        let mut add = || -> std::result::Result<(), zk::Error> {
            multi.add_set_data(path, &[], Some(stat.version))?;
            match &stale {
                Some(old) => multi.add_set_data(&marker, &mark, Some(old.version)),
                None => multi.add_create(&marker, &mark, &options),
            }
        };
        add().map_err(|e| map_error("delete", e))?;
        match timed_raw("delete", self.timeout, multi.commit())
            .await?
            .map_err(zk::Error::from)
        {
            Ok(_) => Ok(Some(())),
            Err(zk::Error::BadVersion | zk::Error::NoNode | zk::Error::NodeExists) => Ok(None),
            Err(error) => Err(map_write_error("delete", error)),
        }
    }

    /// Removes a key's value (only at version `expected`, if given). The key's guard (its
    /// epoch node; in the native layout its emptied node) stays for the reclaimer, which
    /// also prunes the emptied directories.
    pub async fn remove(&self, key: &str, expected: Option<u64>) -> Result<Removal> {
        let client = self.client().await?;
        self.known.forget(key);
        if expected.is_none() && !self.layout.native() {
            // A permanent value (the common case) goes in one round trip, with no read: a key
            // has one value node at a time (every change of node kind is one multi that
            // removes the others), so a permanent node that was there was the live value.
            let permanent = self.layout.value(key, false);
            let delete = client.delete(&permanent, None);
            match timed_raw("delete", self.timeout, delete).await? {
                Ok(()) => {
                    self.reclaimer.schedule(key);
                    return Ok(Removal::Removed { live: true });
                }
                Err(zk::Error::NoNode) => {}
                Err(error) => return Err(map_write_error("delete", error)),
            }
        }
        for _ in 0..ATTEMPTS {
            let state = self.read_key_to_write(&client, key).await?;
            if let Some(expected) = expected {
                state.check_version(key, expected)?;
            }
            let live = state.live().is_some();
            if state.nodes.is_empty() {
                return Ok(Removal::Absent);
            }
            if self.layout.native() {
                if self.remove_node(&client, key, &state).await?.is_none() {
                    continue;
                }
                self.reclaimer.schedule(key);
                return Ok(Removal::Removed { live });
            }
            let mut multi = client.new_multi_writer();
            let mut add = || -> std::result::Result<(), zk::Error> {
                if expected.is_some() {
                    // The node read may be gone and a new one back at its version.
                    self.add_epoch(&mut multi, key, state.epoch.as_ref(), false)?;
                }
                for node in &state.nodes {
                    multi.add_delete(&node.path, Some(node.stat.version))?;
                }
                Ok(())
            };
            add().map_err(|e| map_error("delete", e))?;
            match timed_raw("delete", self.timeout, multi.commit())
                .await?
                .map_err(zk::Error::from)
            {
                Ok(_) => {
                    self.reclaimer.schedule(key);
                    return Ok(Removal::Removed { live });
                }
                Err(zk::Error::BadVersion | zk::Error::NoNode | zk::Error::NodeExists) => continue,
                Err(error) => return Err(map_write_error("delete", error)),
            }
        }
        Err(Error::unavailable(
            format!("the delete of {key} kept racing with other writers; try again"),
            None,
        ))
    }
}
