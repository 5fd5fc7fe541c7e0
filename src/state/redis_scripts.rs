//! The Lua scripts of the Redis backend: `breaker.rs`'s state machine and
//! `budget.rs`'s counts, each decision one atomic script on the server's clock
//! (`TIME`: one clock for the whole fleet). Keys expire when nothing uses them.
//!
//! A breaker is a hash (`phase`, `since`, `pout`, `pok`, `pdl`, `opened`, `last`)
//! and two sorted sets of attempts in the window (all, and the failed ones); the
//! budget a hash of per-second counters `f:<second>` and `r:<second>`; the names in
//! use a sorted set scored by their last use.

/// Shared head: the server's time in milliseconds, and the budget's pruning.
const HEAD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function prune_budget(key, window_s)
  local sec = math.floor(now / 1000)
  local fields = redis.call('HKEYS', key)
  local f, r = 0, 0
  for _, name in ipairs(fields) do
    local s = tonumber(string.sub(name, 3))
    if s == nil or s + window_s <= sec then
      redis.call('HDEL', key, name)
    else
      local n = tonumber(redis.call('HGET', key, name)) or 0
      if string.sub(name, 1, 1) == 'f' then f = f + n else r = r + n end
    end
  end
  return sec, f, r
end
-- The index of breaker names, scored by last use: names unused past the TTL leave
-- it, as their hashes expire (a key per commit, `./deploy.sh $SHA`, would otherwise
-- grow it for as long as the fleet is busy).
local function index_key(index, name, ttl)
  redis.call('ZADD', index, now, name)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now - ttl)
  redis.call('PEXPIRE', index, ttl)
end
";

/// KEYS: breaker hash, budget hash, index (a sorted set). ARGV: cooldown ms ('' for no
/// breaker), probes, first (1/0), budget window s (0 for no budget), ttl ms, key.
/// Returns {kind, since, next_probe}: kind 0 go, 1 probe, 2 open.
const ADMIT: &str = r"
local cooldown, probes = tonumber(ARGV[1]), tonumber(ARGV[2])
local window_s, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
-- A skipped link is no attempt: only what runs counts in the budget.
local function runs(answer)
  if ARGV[3] == '1' and window_s > 0 then
    local sec = prune_budget(KEYS[2], window_s)
    redis.call('HINCRBY', KEYS[2], 'f:' .. sec, 1)
    redis.call('PEXPIRE', KEYS[2], window_s * 2000)
  end
  return answer
end
if cooldown == nil then return runs({0, 0, 0}) end
local h = redis.call('HMGET', KEYS[1], 'phase', 'since', 'pout', 'pok', 'pdl')
local phase = h[1] or 'closed'
local since, pout, pok, pdl = tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0, tonumber(h[5]) or 0
if phase == 'closed' then return runs({0, 0, 0}) end
if phase == 'open' then
  if now < since + cooldown then return {2, since, since + cooldown} end
  phase, pout, pok = 'half_open', 0, 0
elseif now >= pdl then
  pout = pok
end
if pout >= probes then return {2, since, pdl} end
redis.call('HSET', KEYS[1], 'phase', phase, 'pout', pout + 1, 'pok', pok, 'pdl', now + cooldown, 'last', now)
redis.call('PEXPIRE', KEYS[1], ttl)
index_key(KEYS[3], ARGV[6], ttl)
return runs({1, since, now + cooldown})
";

/// KEYS: breaker hash, all attempts, failed attempts, index (a sorted set). ARGV: probe (1/0),
/// failed (1/0), within ms, failures to trip (0: by ratio), ratio, min attempts,
/// probes, ttl ms, a unique member, key.
const RECORD: &str = r"
local probe, failed = ARGV[1] == '1', ARGV[2] == '1'
local within, trip_n = tonumber(ARGV[3]), tonumber(ARGV[4])
local ratio, min_n, probes, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local phase = redis.call('HGET', KEYS[1], 'phase') or 'closed'
local function open()
  redis.call('HSET', KEYS[1], 'phase', 'open', 'since', now, 'pout', 0, 'pok', 0)
  redis.call('HINCRBY', KEYS[1], 'opened', 1)
  redis.call('DEL', KEYS[2], KEYS[3])
end
redis.call('HSET', KEYS[1], 'last', now)
redis.call('HSETNX', KEYS[1], 'phase', 'closed')
if phase == 'closed' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - within)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - within)
  redis.call('ZADD', KEYS[2], now, ARGV[9])
  if failed then redis.call('ZADD', KEYS[3], now, ARGV[9]) end
  local a, f = redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3])
  local trips
  if trip_n > 0 then trips = f >= trip_n else trips = a >= min_n and f >= ratio * a end
  if trips then
    open()
  else
    redis.call('PEXPIRE', KEYS[2], within)
    redis.call('PEXPIRE', KEYS[3], within)
  end
elseif phase == 'half_open' and probe then
  if failed then
    open()
  else
    local ok = redis.call('HINCRBY', KEYS[1], 'pok', 1)
    if ok >= probes then
      redis.call('HSET', KEYS[1], 'phase', 'closed', 'since', 0, 'pout', 0, 'pok', 0)
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
index_key(KEYS[4], ARGV[10], ttl)
return 1
";

/// KEYS: budget hash. ARGV: ratio, min per second, window s. Returns 1 when a retry
/// was taken, 0 when the budget is exhausted.
const WITHDRAW: &str = r"
local ratio, mps, window_s = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local sec, f, r = prune_budget(KEYS[1], window_s)
if r + 1 > ratio * f + mps * window_s then return 0 end
redis.call('HINCRBY', KEYS[1], 'r:' .. sec, 1)
redis.call('PEXPIRE', KEYS[1], window_s * 2000)
return 1
";

/// KEYS: budget hash. ARGV: window s. Returns {now, first attempts, retries}.
const BUDGET: &str = r"
local sec, f, r = prune_budget(KEYS[1], tonumber(ARGV[1]))
return {now, f, r}
";

fn with_head(body: &str) -> String {
    format!("{HEAD}{body}")
}

pub(super) fn admit() -> redis::Script {
    redis::Script::new(&with_head(ADMIT))
}

pub(super) fn record() -> redis::Script {
    redis::Script::new(&with_head(RECORD))
}

pub(super) fn withdraw() -> redis::Script {
    redis::Script::new(&with_head(WITHDRAW))
}

pub(super) fn budget() -> redis::Script {
    redis::Script::new(&with_head(BUDGET))
}
