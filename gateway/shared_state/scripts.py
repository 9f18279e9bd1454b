"""The Lua scripts behind the Redis backend: each operation is one script, atomic on the
server, run by EVALSHA (one round trip; redis-py loads a script the server lost).

Time is the caller's (``now`` in seconds, an argument), so every replica and every test
uses one clock and windows can be tested without waiting for them. Only counters, scores
and hashed identifiers are written; see ``redis_backend`` for the key layout.

In-flight scripts name keys they derive from a replica id (``{prefix}live:{id}``), so they
need a standalone Redis or Valkey (a primary, with replicas if wanted), not Redis Cluster.
"""

from __future__ import annotations

# Drops charges older than the window from the running total; returns the total left.
_EXPIRE_CHARGES = """
local function expire_charges(chg, amt, tot, cutoff)
  local old = redis.call('ZRANGEBYSCORE', chg, '-inf', cutoff)
  if #old > 0 then
    local gone = 0
    for _, id in ipairs(old) do
      gone = gone + tonumber(redis.call('HGET', amt, id) or '0')
      redis.call('HDEL', amt, id)
    end
    redis.call('ZREMRANGEBYSCORE', chg, '-inf', cutoff)
    redis.call('DECRBY', tot, gone)
  end
  return tonumber(redis.call('GET', tot) or '0')
end
local function oldest_retry(zset, now, window)
  local oldest = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if #oldest == 0 then return tostring(window) end
  return tostring(tonumber(oldest[2]) + window - now)
end
"""

# KEYS: requests zset, charges zset, charge amounts hash, token total.
# ARGV: now, window_s, requests limit (-1: none), tokens limit (-1: none), member, ttl_ms.
# -> {1} admitted | {0, kind, retry_after_s}.  A request refused before BEGIN is counted here.
ADMIT = (
    _EXPIRE_CHARGES
    + """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    return {0, 'requests', oldest_retry(KEYS[1], now, window)}
  end
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
if tpm >= 0 and expire_charges(KEYS[2], KEYS[3], KEYS[4], now - window) >= tpm then
  return {0, 'tokens', oldest_retry(KEYS[2], now, window)}
end
return {1}
"""
)

# KEYS: charges zset, charge amounts hash, token total.
# ARGV: now, window_s, charge id, tokens used, ttl_ms.  -> 1 settled | 0 already expired
SETTLE = (
    _EXPIRE_CHARGES
    + """
expire_charges(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]) - tonumber(ARGV[2]))
local held = redis.call('HGET', KEYS[2], ARGV[3])
if not held then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('INCRBY', KEYS[3], tonumber(ARGV[4]) - tonumber(held))
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
return 1
"""
)

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

# A request's start in one script: counted (as ADMIT), its tokens reserved, a place taken,
# refusing in that order; the request stays counted when a later step refuses, and a
# refused place reserves nothing.
# KEYS: requests zset, charges zset, charge amounts hash, token total, replicas set,
#       this replica's in-flight hash, this replica's liveness key.
# ARGV: now, window_s, requests limit (-1: none), tokens limit (-1: none), request member,
#       ttl_ms, tokens wanted (0: none), charge id, replica id, key id, places limit,
#       liveness_ttl_ms, prefix, places_ttl_ms.
# -> {1} | {0, 'requests' | 'tokens', retry_after_s} | {0, 'places', places}
BEGIN = (
    _EXPIRE_CHARGES
    + _COUNT_PLACES
    + """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, wanted = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[7])
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    return {0, 'requests', oldest_retry(KEYS[1], now, window)}
  end
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
if tpm >= 0 then
  local total = expire_charges(KEYS[2], KEYS[3], KEYS[4], now - window)
  if total >= tpm or total + wanted > tpm then
    return {0, 'tokens', oldest_retry(KEYS[2], now, window)}
  end
end
redis.call('SET', KEYS[7], '1', 'PX', ARGV[12])
redis.call('SADD', KEYS[5], ARGV[9])
local places = count_places(KEYS[5], ARGV[9], ARGV[10], ARGV[13])
if places >= tonumber(ARGV[11]) then return {0, 'places', places} end
redis.call('HINCRBY', KEYS[6], ARGV[10], 1)
redis.call('PEXPIRE', KEYS[6], ARGV[14])
if wanted > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[8])
  redis.call('HSET', KEYS[3], ARGV[8], wanted)
  redis.call('INCRBY', KEYS[4], wanted)
  for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
end
return {1}
"""
)

# KEYS: this replica's in-flight hash.  ARGV: key id.  -> places left for this replica
LEAVE = """
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n <= 1 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
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

# KEYS: the client's failures zset.  ARGV: now, window_s, max failures.
# -> {1} may try | {0, retry_after_s}
GUARD_CHECK = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(oldest[2]) + window - now)}
end
return {1}
"""

# KEYS: the client's failures zset.  ARGV: now, window_ms, max failures, member.
# Keeps the newest max failures only: enough to refuse, bounded whatever a client sends.
GUARD_FAILED = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[3]) + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

ALL = {
    "admit": ADMIT,
    "settle": SETTLE,
    "begin": BEGIN,
    "leave": LEAVE,
    "heartbeat": HEARTBEAT,
    "resync": RESYNC,
    "guard_check": GUARD_CHECK,
    "guard_failed": GUARD_FAILED,
}
