-- Shared by the lockout scripts (included between the markers below, see store/client.py).
-- BEGIN lockout_common core
-- Redis's clock in ms, and the identity's last clear (KEYS[7] in every script).
local function clock()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), tonumber(redis.call('GET', KEYS[7]) or '0')
end

-- Milliseconds left on a lock set after the last clear; 0 when none.
local function lock_left(key, cleared)
  local set_at = redis.call('GET', key)
  if not set_at or tonumber(set_at) <= cleared then return 0 end
  return math.max(redis.call('PTTL', key), 0)
end

-- Failures in the window since the last clear, plus checks in flight (pruned on the way).
local function live_count(failures, pending, now_ms, window_ms, cleared)
  redis.call('ZREMRANGEBYSCORE', failures, '-inf', math.max(now_ms - window_ms, cleared))
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', now_ms)
  return redis.call('ZCARD', failures) + redis.call('ZCARD', pending)
end
-- END lockout_common core
