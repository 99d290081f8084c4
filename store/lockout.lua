-- Count one failed password check for one login identity; lock it at the threshold.
-- KEYS[1] = failures (sorted set of failure times, ms), KEYS[2] = lock,
-- KEYS[3] = pending (the reservations of checks in flight, see lockout_reserve.lua).
-- ARGV = threshold, window ms, lock ms, the check's reservation (a unique member).
-- Returns {state, failures in the window, lock ms left}: state 0 = counted, 1 = already
-- locked (not counted), 2 = counted and this failure set the lock.
-- Atomic, so concurrent failures from many connections lock at exactly the threshold.
-- The reservation becomes the failure: pending shrinks by one as failures grow by one.

local threshold, window_ms, lock_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[4])
local locked_ms = redis.call('PTTL', KEYS[2])
if locked_ms > 0 then
  return {1, 0, locked_ms}
end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window_ms)
redis.call('ZADD', KEYS[1], now_ms, ARGV[4])
local count = redis.call('ZCARD', KEYS[1])
if count >= threshold then
  redis.call('SET', KEYS[2], now_ms, 'PX', lock_ms)
  -- Counting starts over once the lock ends.
  redis.call('DEL', KEYS[1])
  return {2, count, lock_ms}
end
redis.call('PEXPIRE', KEYS[1], window_ms)
return {0, count, 0}
