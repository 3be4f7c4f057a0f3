//! Reading and removing subtrees: one level per round trip, each level's children and values
//! read with batched multi-reads, never one request per key.

use kv_core::{Child, Error, Key, KvPair, Result};
use zookeeper_client as zk;

use std::collections::{BTreeMap, HashSet};

use crate::batch::{Read, read_batched, read_many};
use crate::layout::{EPOCH, VALUE, now_ms};
use crate::value::Node;
use crate::{Inner, map_error, map_write_error, timed_raw, version_of};

/// Deletes per multi-write request; a subtree within one is removed atomically.
const DELETE_BATCH: usize = 2_000;

/// A subtree as read: its directories (deepest last) and its value nodes.
pub(crate) struct Walk {
    /// Directory paths, parents before children.
    pub dirs: Vec<String>,
    /// The directories that hold an epoch node (default layout).
    pub epochs: HashSet<String>,
    /// Value nodes.
    pub values: Vec<Node>,
    layout: crate::layout::Layout,
}

impl Walk {
    /// Each key's live value node (the newest, if a key has two), by key.
    pub fn live(self) -> BTreeMap<Key, Node> {
        let now = now_ms();
        let mut live: BTreeMap<Key, Node> = BTreeMap::new();
        for node in self.values {
            let Some(key) = self.layout.key_of_value(&node.path) else {
                continue;
            };
            let key = Key::from_normalized(&key);
            if live
                .get(&key)
                .is_some_and(|n| n.stat.mzxid > node.stat.mzxid)
            {
                continue;
            }
            live.insert(key, node);
        }
        live.retain(|_, node| !node.stored.expired(now));
        live
    }

    /// The live pairs, sorted by key.
    pub fn pairs(self) -> Vec<KvPair> {
        self.live()
            .into_iter()
            .map(|(key, node)| KvPair {
                key,
                value: node.stored.value,
                version: version_of(node.stat.mzxid),
            })
            .collect()
    }
}

/// Walks the subtree of `prefix`: every directory and value node below it (and its own). Each
/// level is one round trip that lists the directories and reads their values with them (the
/// permanent value node `=`, or in the native layout the node itself); TTL value nodes are read
/// at the end.
pub(crate) async fn walk(inner: &Inner, client: &zk::Client, prefix: &str) -> Result<Walk> {
    let layout = &inner.layout;
    let mut dirs = Vec::new();
    let mut epochs = HashSet::new();
    let mut values = Vec::new();
    let mut late = Vec::new();
    let mut level = vec![layout.dir(prefix)];
    let value_of = |dir: &str| match layout.native() {
        true => dir.to_owned(),
        false => format!("{dir}/{VALUE}"),
    };
    while !level.is_empty() {
        let value_paths: Vec<String> = level.iter().map(|d| value_of(d)).collect();
        let reads: Vec<Read<'_>> = level
            .iter()
            .zip(&value_paths)
            .flat_map(|(dir, value)| [Read::Children(dir), Read::Data(value)])
            .collect();
        let mut listed = read_batched(inner, client, &reads).await?.into_iter();
        let mut next = Vec::new();
        for (dir, value_path) in level.iter().zip(value_paths) {
            let (Some(children), Some(own)) = (listed.next(), listed.next()) else {
                break;
            };
            let children = match children {
                zk::MultiReadResult::Children { children } => children,
                zk::MultiReadResult::Error {
                    err: zk::Error::NoNode,
                } => continue,
                zk::MultiReadResult::Error { err } => return Err(map_error("list", err)),
                _ => continue,
            };
            let listed_value = match layout.native() {
                true => layout.key_of_dir(dir).is_some(),
                false => children.iter().any(|c| c == VALUE),
            };
            match own {
                zk::MultiReadResult::Data { data, stat } if listed_value => {
                    if let Some(stored) = layout.stored(data, &stat) {
                        values.push(Node {
                            path: value_path,
                            stored,
                            stat,
                        });
                    }
                }
                zk::MultiReadResult::Error { err } if err != zk::Error::NoNode => {
                    return Err(map_error("list", err));
                }
                _ => {}
            }
            if !layout.native() && children.iter().any(|c| c == EPOCH) {
                // An emptied key (no value node left) goes to the reclaimer, which looks again.
                if !children.iter().any(|c| layout.is_value_name(c))
                    && let Some(key) = layout.key_of_dir(dir)
                {
                    inner.reclaimer.schedule(&key);
                }
                epochs.insert(dir.clone());
            }
            for child in children {
                let path = format!("{dir}/{child}");
                if layout.is_value_name(&child) {
                    if child != VALUE {
                        late.push(path);
                    }
                } else if layout.key_of_dir(&path).is_some() {
                    next.push(path);
                }
            }
            dirs.push(dir.clone());
        }
        level = next;
    }
    let read = read_many(inner, client, &late, false).await?;
    for (path, result) in late.into_iter().zip(read) {
        match result {
            zk::MultiReadResult::Data { data, stat } => {
                if let Some(stored) = layout.stored(data, &stat) {
                    values.push(Node { path, stored, stat });
                }
            }
            zk::MultiReadResult::Error {
                err: zk::Error::NoNode,
            } => {}
            zk::MultiReadResult::Error { err } => return Err(map_error("list", err)),
            _ => {}
        }
    }
    if layout.native() {
        let nodes: Vec<(String, zk::Stat)> =
            values.iter().map(|n| (n.path.clone(), n.stat)).collect();
        let hollow = inner.hollow(client, &nodes).await?;
        for path in &hollow {
            if let Some(key) = layout.key_of_dir(path) {
                inner.reclaimer.schedule(&key);
            }
        }
        values.retain(|n| !hollow.contains(&n.path));
    }
    Ok(Walk {
        dirs,
        epochs,
        values,
        layout: layout.clone(),
    })
}

/// The direct children of `prefix`: two round trips (the directory, then all its children),
/// and more for a child whose only descendants may be emptied keys (kept a while for the
/// reclaimer): one level per round trip until a key shows up below it.
pub(crate) async fn children(
    inner: &Inner,
    client: &zk::Client,
    prefix: &str,
) -> Result<Vec<Child>> {
    let dir = inner.layout.dir(prefix);
    let names = match timed_raw("list_children", inner.timeout, client.list_children(&dir)).await? {
        Ok(names) => names,
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(error) => return Err(map_error("list_children", error)),
    };
    let layout = &inner.layout;
    let paths: Vec<String> = names
        .iter()
        .filter(|n| !layout.is_value_name(n))
        .map(|n| format!("{dir}/{n}"))
        .filter(|p| layout.key_of_dir(p).is_some())
        .collect();
    // Native layout: each child's own data and stat say both; else its children do.
    let listed = read_many(inner, client, &paths, !layout.native()).await?;
    let now = now_ms();
    let mut found = Vec::new();
    let mut written = Vec::new();
    for (path, result) in paths.iter().zip(listed) {
        match result {
            zk::MultiReadResult::Children { children: below } => found.push((
                path,
                below.iter().any(|n| layout.is_value_name(n)),
                below.iter().any(|n| layout.is_dir_name(n)),
            )),
            zk::MultiReadResult::Data { data, stat } => {
                written.push((path.clone(), stat));
                found.push((
                    path,
                    layout
                        .stored(data, &stat)
                        .is_some_and(|stored| !stored.expired(now)),
                    stat.num_children > 0,
                ));
            }
            _ => {}
        }
    }
    let hollow = match layout.native() {
        true => inner.hollow(client, &written).await?,
        false => Default::default(),
    };
    let below: Vec<&String> = found.iter().filter(|f| f.2).map(|f| f.0).collect();
    let holding = holding_keys(inner, client, &below).await?;
    let mut children = Vec::new();
    for (path, has_value, has_children) in found {
        let has_value = has_value && !hollow.contains(path);
        let has_children = has_children && holding.contains(path);
        // An emptied directory waiting for ZooKeeper's reaper is not a child.
        if !has_value && !has_children {
            continue;
        }
        if let Some(key) = inner.layout.key_of_dir(path) {
            children.push(Child {
                key: Key::from_normalized(&key),
                has_value,
                has_children,
            });
        }
    }
    children.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(children)
}

/// Which of these directories (nodes, in the native layout) have a key below them, looking one
/// level deeper per round trip for those not yet decided.
async fn holding_keys(
    inner: &Inner,
    client: &zk::Client,
    dirs: &[&String],
) -> Result<HashSet<String>> {
    let layout = &inner.layout;
    let mut holding = HashSet::new();
    let mut level: Vec<(&String, String)> = dirs.iter().map(|d| (*d, (*d).clone())).collect();
    while !level.is_empty() {
        let paths: Vec<String> = level.iter().map(|(_, p)| p.clone()).collect();
        let listed = read_many(inner, client, &paths, true).await?;
        let mut below: Vec<(&String, String)> = Vec::new();
        for ((owner, path), result) in level.iter().zip(listed) {
            if let zk::MultiReadResult::Children { children } = result {
                // A value of the directory itself is no key below it.
                if path != *owner && children.iter().any(|n| layout.is_value_name(n)) {
                    holding.insert((*owner).clone());
                }
                below.extend(
                    children
                        .iter()
                        .filter(|n| layout.is_dir_name(n))
                        .map(|n| (*owner, format!("{path}/{n}")))
                        .filter(|(_, p)| layout.key_of_dir(p).is_some()),
                );
            }
        }
        below.retain(|(owner, _)| !holding.contains(*owner));
        if layout.native() {
            // A node below is a key if it was written and is not hollow; else look below it.
            let paths: Vec<String> = below.iter().map(|(_, p)| p.clone()).collect();
            let read = read_many(inner, client, &paths, false).await?;
            let mut written = Vec::new();
            let mut deeper = Vec::new();
            for ((owner, path), result) in below.into_iter().zip(read) {
                if let zk::MultiReadResult::Data { data, stat } = result {
                    if layout.stored(data, &stat).is_some() {
                        written.push((owner, path.clone(), stat));
                    }
                    if stat.num_children > 0 {
                        deeper.push((owner, path));
                    }
                }
            }
            let nodes: Vec<(String, zk::Stat)> =
                written.iter().map(|(_, p, s)| (p.clone(), *s)).collect();
            let hollow = inner.hollow(client, &nodes).await?;
            for (owner, path, _) in written {
                if !hollow.contains(&path) {
                    holding.insert(owner.clone());
                }
            }
            deeper.retain(|(owner, _)| !holding.contains(*owner));
            level = deeper;
        } else {
            level = below;
        }
    }
    Ok(holding)
}

/// Removes the subtree of `prefix` (the base itself stays) and returns how many live keys it
/// held. One `multi` when it fits, so no reader sees half of it, in batches beyond; retried if
/// a directory gains a child between the walk and the removal. A node that is gone meanwhile
/// is no race: ZooKeeper's container reaper removes emptied directories on its own schedule
/// (at most `znode.container.maxPerMinute`, 10,000 by default), so the walk keeps finding
/// empty ones that vanish before the `multi` runs; such a batch is redone node by node.
///
/// With `guards`, each key's epoch node stays for the reclaimer (a write in flight may check
/// it), and so do its directory and the ones above it; without (`purge`, for a namespace
/// nobody else uses), they go too.
pub(crate) async fn delete(
    inner: &Inner,
    client: &zk::Client,
    prefix: &str,
    guards: bool,
) -> Result<u64> {
    let mut removed = 0u64;
    for _ in 0..8 {
        let walk = walk(inner, client, prefix).await?;
        let mut doomed_values: Vec<String> = walk.values.iter().map(|n| n.path.clone()).collect();
        let pinned: Vec<String> = match guards {
            true => walk.epochs.iter().cloned().collect(),
            false => {
                doomed_values.extend(walk.epochs.iter().map(|d| format!("{d}/{EPOCH}")));
                Vec::new()
            }
        };
        let mut kept: HashSet<&str> = HashSet::new();
        for dir in &pinned {
            let mut at = dir.as_str();
            while kept.insert(at) {
                match at.rfind('/') {
                    Some(slash) if slash > 0 => at = &at[..slash],
                    _ => break,
                }
            }
        }
        let dirs: Vec<String> = walk
            .dirs
            .iter()
            .filter(|d| !kept.contains(d.as_str()))
            .cloned()
            .collect();
        let live: HashSet<String> = walk.live().into_values().map(|n| n.path).collect();
        // Children before parents: values first, then directories deepest first (in the
        // native layout the values are the directories).
        let mut doomed: Vec<&str> = if inner.layout.native() {
            Vec::new()
        } else {
            doomed_values.iter().map(String::as_str).collect()
        };
        doomed.extend(
            dirs.iter()
                .rev()
                .map(String::as_str)
                .filter(|d| *d != inner.layout.base()),
        );
        let mut raced = false;
        for batch in doomed.chunks(DELETE_BATCH) {
            let mut multi = client.new_multi_writer();
            for path in batch {
                multi
                    .add_delete(path, None)
                    .map_err(|e| map_error("delete_tree", e))?;
            }
            match timed_raw("delete_tree", inner.timeout, multi.commit())
                .await?
                .map_err(zk::Error::from)
            {
                Ok(_) => removed += batch.iter().filter(|p| live.contains(**p)).count() as u64,
                Err(zk::Error::NoNode) => {
                    let (deleted, complete) = delete_each(inner, client, batch, &live).await?;
                    removed += deleted;
                    if !complete {
                        raced = true;
                        break;
                    }
                }
                Err(zk::Error::NotEmpty) => {
                    raced = true;
                    break;
                }
                Err(error) => return Err(map_write_error("delete_tree", error)),
            }
        }
        if !raced {
            for dir in &pinned {
                if let Some(key) = inner.layout.key_of_dir(dir) {
                    inner.reclaimer.schedule(&key);
                }
            }
            if prefix.is_empty() {
                // The emptied base goes too (it is recreated by the next write).
                let _ = timed_raw(
                    "delete_tree",
                    inner.timeout,
                    client.delete(inner.layout.base(), None),
                )
                .await;
            } else if let Some(at) = inner.layout.dir(prefix).rfind('/') {
                inner
                    .prune(client, inner.layout.dir(prefix)[..at].to_owned())
                    .await;
            }
            return Ok(removed);
        }
    }
    Err(Error::unavailable(
        "delete_tree kept racing with writers below the prefix; try again",
        None,
    ))
}

/// Deletes a batch some of whose nodes are gone, one request per node, pipelined (the client
/// sends requests in call order and the server answers a session's requests in order, so
/// children still go before parents), skipping nodes already gone. Returns how many of the
/// `live` value nodes it deleted and whether it got through (a directory that gained a child
/// stops it).
async fn delete_each(
    inner: &Inner,
    client: &zk::Client,
    batch: &[&str],
    live: &HashSet<String>,
) -> Result<(u64, bool)> {
    let deletes: Vec<_> = batch.iter().map(|path| client.delete(path, None)).collect();
    let results = timed_raw("delete_tree", inner.timeout, async {
        Ok::<_, zk::Error>(futures::future::join_all(deletes).await)
    })
    .await?
    .map_err(|e| map_write_error("delete_tree", e))?;
    let (mut deleted, mut complete) = (0, true);
    for (path, result) in batch.iter().zip(results) {
        match result {
            Ok(()) => deleted += u64::from(live.contains(*path)),
            Err(zk::Error::NoNode) => {}
            Err(zk::Error::NotEmpty) => complete = false,
            Err(error) => return Err(map_write_error("delete_tree", error)),
        }
    }
    Ok((deleted, complete))
}
