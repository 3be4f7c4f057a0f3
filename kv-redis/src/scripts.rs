//! Every change is one Lua script, so value, version, index, expiry set and change log move
//! together. Keys (all under the hash tag `kv{root}`, one cluster slot):
//!
//! | Redis key | type | holds |
//! |---|---|---|
//! | `P:d:<key>` | hash | `v` value, `ver` version, `exp` expiry (Unix ms, optional) |
//! | `P:idx` | sorted set | every key, score 0: prefix listing by `ZRANGEBYLEX`, never `SCAN` |
//! | `P:exp` | sorted set | keys with a TTL, scored by expiry |
//! | `P:rev` | string | the last revision handed out (versions, fencing tokens) |
//! | `P:epoch` | string | the server time when `P:rev` started at 1: a restart that lost the data starts a new epoch |
//! | `P:log` | stream | change records, id `<revision>-<n>`: live watches and `since` history |
//! | `P:floor` | string | id of the last record trimmed from the log |
//! | `P:lk:<key>`, `P:ls:<key>` | hash | key / subtree lock: `t` token, `v` holder value (PEXPIRE) |
//! | `P:lki`, `P:lsi` | sorted set | keys of held key / subtree locks, for subtree checks |
//! | `P:leases` | sorted set | live leases (`Store::grant`) by id, scored by expiry |
//! | `P:lttl` | hash | each lease's TTL (ms) |
//! | `P:leaseid` | string | the last lease id handed out |
//! | `P:lease:<id>` | set | keys put with the lease (each also has `lease` = id in its hash) |
//!
//! A key put with a lease is a TTL key (`exp`, `PEXPIREAT`, `P:exp`) whose expiry every renewal
//! of the lease moves; a later put without the lease drops the `lease` field (with `exp`).
//!
//! A value with a TTL also carries Redis's own expiry (`PEXPIREAT` on `P:d:<key>`), so Redis
//! frees it even when no kv client runs. Expired values are invisible at once: point reads
//! (`HMGET`, no script; `TIME` too for a value with a TTL) and scripts compare `exp` with the
//! server's time,
//! and a script that finds the hash gone but the key still in `P:exp` knows it expired; a
//! reaper run by every client logs the Delete record. Nothing depends on keyspace
//! notifications, so it works on managed Redis without `CONFIG SET`.
//!
//! Every script takes `ARGV[1]` = P and `ARGV[2]` = the log's length limit.

use std::sync::LazyLock;

use redis::Script;

/// The namespace's keys beside the values (`P:<name>`), which `delete_tree` keeps so that
/// versions never go back; `Store::purge` removes them too.
pub const BOOKKEEPING: &[&str] = &[
    "idx", "exp", "rev", "epoch", "log", "floor", "lki", "lsi", "nv", "leases", "lttl", "leaseid",
];

/// Helpers every script starts with.
const PRELUDE: &str = r#"
local P = ARGV[1]
local HIST = tonumber(ARGV[2])
-- The server's time, asked once per call and only when an expiry needs it.
local NOW
local function now_ms()
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end
local function dkey(k) return P .. ':d:' .. k end
-- k's live state `{version, expiry or false, value}` (the value only if asked for), nil if
-- there is none, false if it expired but is not removed yet.
local function state(k, with_value)
  local cur
  if with_value then
    cur = redis.call('HMGET', dkey(k), 'ver', 'exp', 'v')
  else
    cur = redis.call('HMGET', dkey(k), 'ver', 'exp')
  end
  if not cur[1] then
    -- Redis itself removed the value at its TTL: expired (not yet reaped) if still listed.
    local exp = tonumber(redis.call('ZSCORE', P .. ':exp', k))
    if exp and exp <= now_ms() then return false end
    return nil
  end
  local exp = tonumber(cur[2])
  if exp and exp <= now_ms() then return false end
  return cur
end
local function id(rev, seq) return string.format('%d-%d', rev, seq) end
local function log(rev, seq, k, kind, v)
  redis.call('XADD', P .. ':log', id(rev, seq), 'k', k, 't', kind, 'v', v)
end
-- The log keeps at least HIST records. Its length is checked once every TRIM_EVERY revisions
-- (whichever call took the revision, so no pattern of writes and lock tokens escapes it), not
-- on every write; it is trimmed in batches (up to 128 records, an eighth of HIST at most), and
-- XTRIM frees whole stream nodes where XDEL of the first record one at a time left them to be
-- scanned.
local TRIM_EVERY = 32
local function trim()
  local stream = P .. ':log'
  local extra = redis.call('XLEN', stream) - HIST
  if extra > 0 and extra >= math.min(128, math.floor(HIST / 8)) then
    local trimmed = redis.call('XRANGE', stream, '-', '+', 'COUNT', extra)
    redis.call('XTRIM', stream, 'MAXLEN', HIST)
    redis.call('SET', P .. ':floor', trimmed[#trimmed][1])
  end
end
-- A new revision counter (a new store, or one a restart emptied) gets a new epoch: the
-- server's time, which watches compare to notice that the data they followed is gone.
local function next_rev()
  local rev = redis.call('INCR', P .. ':rev')
  if rev == 1 then
    local t = redis.call('TIME')
    redis.call('SET', P .. ':epoch', t[1] .. '.' .. t[2])
  end
  if rev % TRIM_EVERY == 0 then trim() end
  return rev
end
-- Removes k's value; `cur`, its state if known, spares the expiry set a value without a TTL.
local function drop(k, cur)
  redis.call('DEL', dkey(k))
  redis.call('ZREM', P .. ':idx', k)
  if not cur or cur[2] then redis.call('ZREM', P .. ':exp', k) end
end
local function remove(k, cur)
  drop(k, cur)
  log(next_rev(), 1, k, 'del', '')
end
-- k's live state as `state` gives it, nil if none (an expired value is removed first).
local function live(k)
  local cur = state(k)
  if cur == false then remove(k); return nil end
  return cur
end
local function below(prefix)
  if prefix == '' then return '-', '+' end
  return '[' .. prefix .. '/', '(' .. prefix .. '0'
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// ARGV[3] key, ARGV[4] value, ARGV[5] ttl ms (0: none), ARGV[6] mode (`-`, `absent`,
/// `version`), ARGV[7] expected version, ARGV[8] lease id (optional; then no ttl). Returns
/// `{1, version}`, `{0, current version or 0}`, or `{-1}` if the lease has ended.
pub static PUT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local k, ttl, mode, lease = ARGV[3], tonumber(ARGV[5]), ARGV[6], ARGV[8]
local lease_at
if lease then
  lease_at = tonumber(redis.call('ZSCORE', P .. ':leases', lease))
  if not lease_at or lease_at <= now_ms() then return {-1} end
end
local cur = live(k)
local ver = cur and tonumber(cur[1])
if mode == 'absent' and ver then return {0, ver} end
if mode == 'version' and ver ~= tonumber(ARGV[7]) then return {0, ver or 0} end
local rev = next_rev()
local d = dkey(k)
if lease then
  redis.call('HSET', d, 'v', ARGV[4], 'ver', rev, 'exp', lease_at, 'lease', lease)
  redis.call('PEXPIREAT', d, lease_at)
  redis.call('ZADD', P .. ':exp', lease_at, k)
  redis.call('SADD', P .. ':lease:' .. lease, k)
elseif ttl > 0 then
  local at = now_ms() + ttl
  redis.call('HSET', d, 'v', ARGV[4], 'ver', rev, 'exp', at)
  -- A value that had a TTL may have had a lease: no more.
  if cur and cur[2] then redis.call('HDEL', d, 'lease') end
  redis.call('PEXPIREAT', d, at)
  redis.call('ZADD', P .. ':exp', at, k)
else
  redis.call('HSET', d, 'v', ARGV[4], 'ver', rev)
  if cur and cur[2] then
    -- The old value had a TTL (or a lease), the new one has none.
    redis.call('HDEL', d, 'exp', 'lease')
    redis.call('PERSIST', d)
    redis.call('ZREM', P .. ':exp', k)
  end
end
-- A key that has a live value is already in the index.
if not cur then redis.call('ZADD', P .. ':idx', 0, k) end
log(rev, 1, k, 'put', ARGV[4])
return {1, rev}
"#,
    )
});

/// ARGV[3] key, ARGV[4] expected version (0: any). Returns `{1}` deleted, `{0}` missing,
/// `{-1, current}` version mismatch.
pub static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local k, want = ARGV[3], tonumber(ARGV[4])
local cur = live(k)
if not cur then return {0} end
local ver = tonumber(cur[1])
if want ~= 0 and ver ~= want then return {-1, ver} end
remove(k, cur)
return {1}
"#,
    )
});

/// ARGV[3] number of conditions C; then C triples (key, `missing`/`exists`/`version`/`value`,
/// argument); then one triple per operation (`put` or `del`, key, value or `''`). Returns
/// `{0, failed condition (1-based), its key's version or 0}` when a condition does not hold
/// (nothing written), else `{1, revision of the writes or 0, then 1 or 0 per operation (a put,
/// or a delete that found its key)}`. Every write shares one revision (log ids `rev-1`,
/// `rev-2`, ...); expired values are removed before it is taken.
pub static TXN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local states = {}
local function current(k)
  if states[k] == nil then
    local cur = state(k, true)
    if cur == false then remove(k); cur = nil end
    states[k] = cur or false
  end
  return states[k] or nil
end
local first = 4 + 3 * tonumber(ARGV[3])
for i = 4, first - 1, 3 do
  local cur, kind, arg = current(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  local ok
  if kind == 'missing' then ok = not cur
  elseif not cur then ok = false
  elseif kind == 'exists' then ok = true
  elseif kind == 'version' then ok = tonumber(cur[1]) == tonumber(arg)
  else ok = cur[3] == arg end
  if not ok then return {0, (i - 1) / 3, cur and tonumber(cur[1]) or 0} end
end
for i = first, #ARGV, 3 do current(ARGV[i + 1]) end
local rev, seq, out = nil, 0, {1, 0}
for i = first, #ARGV, 3 do
  local verb, k, v = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local cur = current(k)
  if verb == 'put' or cur then
    if not rev then rev = next_rev(); out[2] = rev end
    seq = seq + 1
    if verb == 'put' then
      local d = dkey(k)
      redis.call('HSET', d, 'v', v, 'ver', rev)
      if cur and cur[2] then
        redis.call('HDEL', d, 'exp', 'lease')
        redis.call('PERSIST', d)
        redis.call('ZREM', P .. ':exp', k)
      end
      if not cur then redis.call('ZADD', P .. ':idx', 0, k) end
      log(rev, seq, k, 'put', v)
    else
      drop(k, cur)
      log(rev, seq, k, 'del', '')
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"#,
    )
});

/// ARGV[3] prefix, ARGV[4] exclusive lower bound (`''` to start), ARGV[5] page size.
/// Returns `{{key, value, version}, ...}` of live keys, in byte order.
pub static LIST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local prefix, after, count = ARGV[3], ARGV[4], tonumber(ARGV[5])
local out = {}
local function add(k)
  local cur = state(k, true)
  if cur then out[#out + 1] = {k, cur[3], cur[1]} end
end
local lo, hi = below(prefix)
if after == '' then
  if prefix ~= '' then add(prefix) end
else
  lo = '(' .. after
end
for _, k in ipairs(redis.call('ZRANGEBYLEX', P .. ':idx', lo, hi, 'LIMIT', 0, count)) do add(k) end
return out
"#,
    )
});

/// ARGV[3] prefix. Returns `{{child, has_value, has_children}, ...}`: one `ZRANGEBYLEX` per
/// child (skipping over each child's subtree), not one per key.
pub static CHILDREN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local prefix = ARGV[3]
local base = prefix == '' and '' or (prefix .. '/')
local lo, hi = below(prefix)
local idx = P .. ':idx'
local function any_live(from, to)
  while true do
    local batch = redis.call('ZRANGEBYLEX', idx, from, to, 'LIMIT', 0, 16)
    if #batch == 0 then return false end
    for _, k in ipairs(batch) do if state(k) then return true end end
    from = '(' .. batch[#batch]
  end
end
local seen, out = {}, {}
while true do
  local first = redis.call('ZRANGEBYLEX', idx, lo, hi, 'LIMIT', 0, 1)[1]
  if not first then break end
  local rest = string.sub(first, #base + 1)
  local slash = string.find(rest, '/', 1, true)
  local child = base .. (slash and string.sub(rest, 1, slash - 1) or rest)
  if not seen[child] then
    seen[child] = true
    local has_value = state(child) and 1 or 0
    local has_children = any_live('[' .. child .. '/', '(' .. child .. '0') and 1 or 0
    if has_value == 1 or has_children == 1 then out[#out + 1] = {child, has_value, has_children} end
  end
  -- After the child's own key come siblings such as `child-x`; after `child/...`, `child0`.
  if first == child then lo = '(' .. child else lo = '[' .. child .. '0' end
end
return out
"#,
    )
});

/// ARGV[3] prefix. Removes the prefix key and everything below it at one revision; returns how
/// many live keys were removed.
pub static DELETE_TREE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local prefix = ARGV[3]
local lo, hi = below(prefix)
local keys = redis.call('ZRANGEBYLEX', P .. ':idx', lo, hi)
if prefix ~= '' and redis.call('EXISTS', dkey(prefix)) == 1 then table.insert(keys, 1, prefix) end
if #keys == 0 then return 0 end
table.sort(keys)
local rev = next_rev()
local live = 0
for i, k in ipairs(keys) do
  local cur = state(k)
  if cur then live = live + 1 end
  drop(k, cur)
  log(rev, i, k, 'del', '')
end
return live
"#,
    )
});

/// ARGV[3] prefix (or key), ARGV[4] `tree` or `key`. Returns `{last log id, {{key, value,
/// version}, ...}}`: the state and the point to follow the log from, taken atomically.
pub static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local path, tree = ARGV[3], ARGV[4] == 'tree'
local out = {}
local function add(k)
  local cur = state(k, true)
  if cur then out[#out + 1] = {k, cur[3], cur[1]} end
end
if path ~= '' then add(path) end
if tree then
  local lo, hi = below(path)
  for _, k in ipairs(redis.call('ZRANGEBYLEX', P .. ':idx', lo, hi)) do add(k) end
end
local last = redis.call('XREVRANGE', P .. ':log', '+', '-', 'COUNT', 1)[1]
return {last and last[1] or '0-0', out, redis.call('GET', P .. ':epoch') or ''}
"#,
    )
});

/// ARGV[3] TTL in ms. Grants a lease; returns its id.
pub static GRANT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = redis.call('INCR', P .. ':leaseid')
redis.call('ZADD', P .. ':leases', now_ms() + tonumber(ARGV[3]), id)
redis.call('HSET', P .. ':lttl', id, ARGV[3])
return id
"#,
    )
});

/// ARGV[3] lease id, ARGV[4] `renew` or `revoke`. Renew: moves the expiry of the lease and of
/// every key still bound to it one TTL from now; returns the TTL in ms, or 0 if the lease has
/// ended.
/// Revoke: ends the lease and removes its keys (Delete records); returns 1, or 0 if it had
/// ended.
pub static LEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id, action = ARGV[3], ARGV[4]
local leases, set = P .. ':leases', P .. ':lease:' .. id
local at = tonumber(redis.call('ZSCORE', leases, id))
local alive = at and at > now_ms()
local function bound(k) return redis.call('HGET', dkey(k), 'lease') == id end
if action == 'revoke' or not alive then
  redis.call('ZREM', leases, id)
  redis.call('HDEL', P .. ':lttl', id)
  if action == 'revoke' then
    for _, k in ipairs(redis.call('SMEMBERS', set)) do
      if bound(k) then remove(k) end
    end
  end
  redis.call('DEL', set)
  return alive and 1 or 0
end
local ttl = tonumber(redis.call('HGET', P .. ':lttl', id))
local new = now_ms() + ttl
redis.call('ZADD', leases, new, id)
for _, k in ipairs(redis.call('SMEMBERS', set)) do
  if bound(k) then
    local d = dkey(k)
    redis.call('HSET', d, 'exp', new)
    redis.call('PEXPIREAT', d, new)
    redis.call('ZADD', P .. ':exp', new, k)
  else
    redis.call('SREM', set, k)
  end
end
return ttl
"#,
    )
});

/// Removes expired values (up to 100) with Delete records, and forgets ended leases. Returns
/// `{removed, ms until the next expiry or -1}`.
pub static REAP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', P .. ':leases', id)
  redis.call('HDEL', P .. ':lttl', id)
  redis.call('DEL', P .. ':lease:' .. id)
end
local due = redis.call('ZRANGEBYSCORE', P .. ':exp', '-inf', now, 'LIMIT', 0, 100)
local removed = 0
for _, k in ipairs(due) do
  if state(k) == false then remove(k); removed = removed + 1 else redis.call('ZREM', P .. ':exp', k) end
end
local nxt = redis.call('ZRANGE', P .. ':exp', 0, 0, 'WITHSCORES')
return {removed, nxt[2] and math.max(0, tonumber(nxt[2]) - now) or -1}
"#,
    )
});

/// ARGV[3] key, ARGV[4] scope (`k` or `s`), ARGV[5] ttl ms, ARGV[6] holder value, ARGV[7..]
/// ancestors. Returns the fencing token, or 0 if a conflicting lock is held.
pub static LOCK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local k, scope, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
local function held(kind, key) return redis.call('EXISTS', P .. ':l' .. kind .. ':' .. key) == 1 end
if held('k', k) or held('s', k) then return 0 end
for i = 7, #ARGV do if held('s', ARGV[i]) then return 0 end end
if scope == 's' then
  for _, kind in ipairs({'k', 's'}) do
    local index = P .. ':l' .. kind .. 'i'
    for _, m in ipairs(redis.call('ZRANGEBYLEX', index, '[' .. k .. '/', '(' .. k .. '0')) do
      if held(kind, m) then return 0 end
      redis.call('ZREM', index, m)
    end
  end
end
local token = next_rev()
local lk = P .. ':l' .. scope .. ':' .. k
redis.call('HSET', lk, 't', token, 'v', ARGV[6])
redis.call('PEXPIRE', lk, ttl)
redis.call('ZADD', P .. ':l' .. scope .. 'i', 0, k)
return token
"#,
    )
});

/// ARGV[3] key, ARGV[4] scope, ARGV[5] token, ARGV[6] ttl ms (0: release). Returns 1 if the
/// token still held the lock (renewed or released), else 0.
pub static LOCK_RENEW_OR_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local k, scope, ttl = ARGV[3], ARGV[4], tonumber(ARGV[6])
local lk = P .. ':l' .. scope .. ':' .. k
if redis.call('HGET', lk, 't') ~= ARGV[5] then return 0 end
if ttl > 0 then
  redis.call('PEXPIRE', lk, ttl)
else
  redis.call('DEL', lk)
  redis.call('ZREM', P .. ':l' .. scope .. 'i', k)
end
return 1
"#,
    )
});

/// ARGV[3] log id to read after, ARGV[4] count. Returns `{id of the last trimmed record,
/// {{id, {field, value, ...}}, ...}, the last revision handed out}`, read atomically so a reader
/// can tell whether records it had not read yet were trimmed, or whether the server lost its
/// data (the revision went back below what the reader has seen).
pub static READ_LOG: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local floor = redis.call('GET', P .. ':floor') or '0-0'
local rev = redis.call('GET', P .. ':rev') or '0'
local epoch = redis.call('GET', P .. ':epoch') or ''
return {floor, redis.call('XRANGE', P .. ':log', '(' .. ARGV[3], '+', 'COUNT', tonumber(ARGV[4])), rev, epoch}
"#,
    )
});
