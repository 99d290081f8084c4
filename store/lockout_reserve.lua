-- Reserve one password check for one login identity, BEFORE the check (bcrypt) runs.
-- KEYS[1] = failures (sorted set of failure times, ms), KEYS[2] = lock,
-- KEYS[3] = pending (sorted set: one member per check in flight, scored by when its
-- reservation lapses, ms).
-- ARGV = threshold, window ms, reservation ttl ms, lock ms, the reservation (unique member).
-- Returns {1, 0} when reserved; {0, retry ms} when the identity is locked, or when the
-- failures in the window plus the checks in flight already reach the threshold.
-- Counting in-flight checks is what stops concurrency from buying extra guesses: at most
-- `threshold` wrong passwords are ever evaluated per window. A reservation whose worker
-- died lapses by its score (pruned here) and the key's TTL.

local threshold, window_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl_ms, lock_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local locked_ms = redis.call('PTTL', KEYS[2])
if locked_ms > 0 then
  return {0, locked_ms}
end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window_ms)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[3]) >= threshold then
  -- The checks in flight are about to lock the identity: answer as the lock will.
  return {0, lock_ms}
end
redis.call('ZADD', KEYS[3], now_ms + ttl_ms, ARGV[5])
redis.call('PEXPIRE', KEYS[3], ttl_ms)
return {1, 0}
