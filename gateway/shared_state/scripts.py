"""The Lua scripts behind the Redis backend: each operation is one script, atomic on the
server, run by EVALSHA (one round trip; redis-py loads a script the server lost).

Time is the caller's (``now`` in seconds, an argument), so every replica and every test
uses one clock and windows can be tested without waiting for them. Only counters, scores
and hashed identifiers are written; see ``redis_backend`` for the key layout.

In-flight scripts name keys they derive from a replica id (``{prefix}live:{id}``), so they
need a standalone Redis or Valkey (a primary, with replicas if wanted), not Redis Cluster.
"""

from __future__ import annotations

# Drops grants older than the window from the running totals; returns both totals left.
_EXPIRE_GRANTS = """
-- A running total never goes below 0 (a total lost to eviction would otherwise go negative
-- and raise the limit): at 0 or less it is removed, which reads as 0.
local function add(total, n)
  if n ~= 0 and redis.call('INCRBY', total, n) <= 0 then redis.call('DEL', total) end
end
local function expire_grants(chg, req, tok, rt, tt, cutoff)
  local old = redis.call('ZRANGEBYSCORE', chg, '-inf', cutoff)
  if #old > 0 then
    local gone_r, gone_t = 0, 0
    for _, id in ipairs(old) do
      gone_r = gone_r + tonumber(redis.call('HGET', req, id) or '0')
      gone_t = gone_t + tonumber(redis.call('HGET', tok, id) or '0')
      redis.call('HDEL', req, id)
      redis.call('HDEL', tok, id)
    end
    redis.call('ZREMRANGEBYSCORE', chg, '-inf', cutoff)
    add(rt, -gone_r)
    add(tt, -gone_t)
  end
  return tonumber(redis.call('GET', rt) or '0'), tonumber(redis.call('GET', tt) or '0')
end
local function oldest_retry(zset, now, window)
  local oldest = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if #oldest == 0 then return tostring(window) end
  return tostring(tonumber(oldest[2]) + window - now)
end
"""

# The places of replicas whose liveness key lapsed are dropped as they are counted.
_COUNT_PLACES = """
local function count_places(replicas, me, kid, prefix)
  local total = 0
  for _, r in ipairs(redis.call('SMEMBERS', replicas)) do
    if r == me or redis.call('EXISTS', prefix .. 'live:' .. r) == 1 then
      total = total + tonumber(redis.call('HGET', prefix .. 'inflight:' .. r, kid) or '0')
    else
      redis.call('SREM', replicas, r)
      redis.call('DEL', prefix .. 'inflight:' .. r)
    end
  end
  return total
end
"""

# A grant of requests, tokens and places in flight for one key, atomically: what a request
# needs now (need_*) and, while far enough from the limit, a slice more (up to want_*) for
# this replica to use locally for lease_s (a lease). A slice is at most remaining / (2 x
# replicas) and is only given when that is at least min_* (else exactly what is needed), so
# near a limit every request is decided here, exactly. A lease is scored at now + lease_s
# (the latest a request may use it), so it stays in the window at least as long as any use.
# Refused in order: requests (nothing counted), tokens, places (the requests granted stay
# counted; no tokens or places granted).
# KEYS: grants zset, requests hash, tokens hash, requests total, tokens total, replicas set,
#       this replica's in-flight hash, this replica's liveness key.
# ARGV: 1 now, 2 window_s, 3 requests limit (-1: none), 4 tokens limit (-1: none), 5 grant id,
#       6 ttl_ms, 7 lease_s, 8 need_r, 9 want_r, 10 min_r, 11 need_t, 12 want_t, 13 min_t,
#       14 places limit (-1: no places asked), 15 need_p, 16 want_p, 17 min_p, 18 replica id,
#       19 key id, 20 liveness_ttl_ms, 21 prefix, 22 places_ttl_ms,
#       23 "1": refuse when the tokens are used up (a request refused before its start).
# -> {1, '', '', granted_r, granted_t, granted_p}
#    | {0, 'requests' | 'tokens', retry_after_s, granted_r, 0, 0} | {0, 'places', held, ...}
LEASE = (
    _EXPIRE_GRANTS
    + _COUNT_PLACES
    + """
local now, window, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[7])
local rpm, tpm, places = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[14])
local need_r, want_r, min_r = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local need_t, want_t, min_t = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local need_p, want_p, min_p = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
local replicas = redis.call('SCARD', KEYS[6])
if replicas < 1 then replicas = 1 end
local function portion(remaining, need, want, min)
  local share = math.floor(remaining / (2 * replicas))
  if want <= need or share < min or share <= need then return need end
  if share > want then return want end
  return share
end
local total_r, total_t = expire_grants(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], now - window)
local gr, gt, gp = 0, 0, 0
local refusal = nil
if rpm >= 0 and want_r > 0 then
  local remaining = rpm - total_r
  if remaining < need_r then
    return {0, 'requests', oldest_retry(KEYS[1], now, window), 0, 0, 0}
  end
  gr = portion(remaining, need_r, want_r, min_r)
end
if tpm >= 0 then
  local remaining = tpm - total_t
  if (ARGV[23] == '1' and remaining <= 0) or remaining < need_t then
    refusal = {0, 'tokens', oldest_retry(KEYS[1], now, window), gr, 0, 0}
  elseif want_t > 0 then
    gt = portion(remaining, need_t, want_t, min_t)
  end
end
if refusal == nil and places >= 0 then
  redis.call('SET', KEYS[8], '1', 'PX', ARGV[20])
  redis.call('SADD', KEYS[6], ARGV[18])
  local held = count_places(KEYS[6], ARGV[18], ARGV[19], ARGV[21])
  if places - held < need_p then
    refusal = {0, 'places', held, gr, 0, 0}
    gt = 0
  else
    gp = portion(places - held, need_p, want_p, min_p)
    if gp > 0 then
      redis.call('HINCRBY', KEYS[7], ARGV[19], gp)
      redis.call('PEXPIRE', KEYS[7], ARGV[22])
    end
  end
end
if gr > 0 or gt > 0 then
  local score = now
  if gr > need_r or gt > need_t then score = now + lease end
  redis.call('ZADD', KEYS[1], score, ARGV[5])
  if gr > 0 then redis.call('HSET', KEYS[2], ARGV[5], gr) end
  if gt > 0 then redis.call('HSET', KEYS[3], ARGV[5], gt) end
  add(KEYS[4], gr)
  add(KEYS[5], gt)
  local ttl = tonumber(ARGV[6]) + math.ceil(lease * 1000)
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
if refusal ~= nil then return refusal end
return {1, '', '', gr, gt, gp}
"""
)

# A grant settled to what its requests used (a lease's unused part given back; a request's
# reserved tokens settled to its usage). Setting absolute amounts makes it safe to repeat.
# KEYS: grants zset, requests hash, tokens hash, requests total, tokens total.
# ARGV: now, window_s, grant id, requests used, tokens used.  -> 1 settled | 0 already expired
SETTLE = (
    _EXPIRE_GRANTS
    + """
expire_grants(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[1]) - tonumber(ARGV[2]))
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 0 end
local r, t = tonumber(ARGV[4]), tonumber(ARGV[5])
local held_r = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
local held_t = tonumber(redis.call('HGET', KEYS[3], ARGV[3]) or '0')
add(KEYS[4], r - held_r)
add(KEYS[5], t - held_t)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  for i = 4, 5 do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
if r == 0 and t == 0 then
  redis.call('ZREM', KEYS[1], ARGV[3])
  redis.call('HDEL', KEYS[2], ARGV[3])
  redis.call('HDEL', KEYS[3], ARGV[3])
else
  redis.call('HSET', KEYS[2], ARGV[3], r)
  redis.call('HSET', KEYS[3], ARGV[3], t)
end
return 1
"""
)

# KEYS: this replica's in-flight hash.  ARGV: key id, places given back.
# -> places this replica still holds for the key
RELEASE = """
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') - tonumber(ARGV[2])
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], n)
return n
"""

# KEYS: this replica's liveness key, replicas set.  ARGV: liveness_ttl_ms, replica id.
HEARTBEAT = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"""

# Rewrites this replica's places from its own count (after an outage the store may have
# lost them, or kept ones given back while it was unreachable).
# KEYS: this replica's in-flight hash, liveness key, replicas set.
# ARGV: liveness_ttl_ms, replica id, places_ttl_ms, then key id / count pairs.
RESYNC = """
redis.call('DEL', KEYS[1])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
"""

# One failed authentication; when the client reaches the limit it joins the set of locked
# clients (scored by when its lock ends), which every replica reads in the background.
# Keeps the newest max failures only: enough to decide, bounded whatever a client sends.
# KEYS: the client's failures zset, the locked set.
# ARGV: now, window_s, window_ms, max failures, member, client id.
# -> {failures in the window, lock end (0: not locked)}
GUARD_FAILED = """
local now, window, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(max + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local count = redis.call('ZCARD', KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if count < max then return {count, '0'} end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local until_ = tonumber(oldest[2]) + window
redis.call('ZADD', KEYS[2], until_, ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {count, tostring(until_)}
"""

# The locks that end last (the newest) first, so a flood of locked decoys cannot push a
# new lock out of the copy. KEYS: the locked set.  ARGV: now, most entries.
# -> {client id, lock end, ...}
GUARD_LOCKED = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. ARGV[1], 'WITHSCORES',
  'LIMIT', 0, tonumber(ARGV[2]))
"""

# KEYS: the locked set.  ARGV: client id.  -> its lock end, or false
GUARD_LOCK_END = """
return redis.call('ZSCORE', KEYS[1], ARGV[1])
"""

# KEYS: the token's key.  ARGV: value, ttl_ms.  -> 1 stored | 0 the id was taken
TOKEN_PUT = """
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 1 end
return 0
"""

ALL = {
    "lease": LEASE,
    "settle": SETTLE,
    "release": RELEASE,
    "heartbeat": HEARTBEAT,
    "resync": RESYNC,
    "guard_failed": GUARD_FAILED,
    "guard_locked": GUARD_LOCKED,
    "guard_lock_end": GUARD_LOCK_END,
    "token_put": TOKEN_PUT,
}
