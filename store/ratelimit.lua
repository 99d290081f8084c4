-- Sliding-window-counter rate limit: one atomic check on one hash key (see store/ratelimit.py).
-- KEYS[1] = the counter hash; ARGV = limit, window_s, cost.
-- Returns {allowed 0|1, remaining, t seconds}.

-- BEGIN ratelimit core
-- Reusable by a bigger per-request script: no KEYS, ARGV or TIME in here; the caller
-- passes the key and the server time (read TIME once per script, not once per limiter).
-- State: hash {w = fixed-window index, c = count in window w, p = count in window w-1}.
-- Every quantity below is "requests x milliseconds", kept in integers so the limit is exact.

local function ratelimit_wait_ms(prev, curr, limit, cost, window_ms, left_ms)
  local room = limit - cost - curr
  if room >= 0 then
    if prev <= room then return 0 end
    -- prev's weight decays linearly to 0 at the end of this window.
    return left_ms - math.floor(room * window_ms / prev)
  end
  -- Only after this window ends can curr (then the previous window) decay enough.
  return left_ms + window_ms - math.floor((limit - cost) * window_ms / curr)
end

local function ratelimit_hit(key, now_ms, limit, window_ms, cost)
  local index = math.floor(now_ms / window_ms)
  local left_ms = (index + 1) * window_ms - now_ms
  local state = redis.call('HMGET', key, 'w', 'c', 'p')
  local stored = tonumber(state[1])
  local curr, prev = tonumber(state[2]) or 0, tonumber(state[3]) or 0
  -- stored > index only if the server clock stepped back (failover): keep counting, never reset.
  local same_window = stored ~= nil and stored >= index
  if not same_window then
    prev = (stored == index - 1) and curr or 0
    curr = 0
  end
  local used = prev * left_ms + curr * window_ms
  local allowed = used + cost * window_ms <= limit * window_ms
  -- A denied check writes nothing: a client hammering while blocked must not extend its block.
  if allowed then
    curr = curr + cost
    used = used + cost * window_ms
    if same_window then
      redis.call('HINCRBY', key, 'c', cost)
    else
      redis.call('HSET', key, 'w', index, 'c', curr, 'p', prev)
      redis.call('PEXPIRE', key, 2 * window_ms)
    end
  end
  local remaining = math.max(0, math.floor((limit * window_ms - used) / window_ms))
  local t_ms = left_ms
  if remaining < cost then
    t_ms = ratelimit_wait_ms(prev, curr, limit, cost, window_ms, left_ms)
  end
  return {allowed and 1 or 0, remaining, math.max(1, math.ceil(t_ms / 1000))}
end
-- END ratelimit core

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return ratelimit_hit(KEYS[1], now_ms, tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000, tonumber(ARGV[3]))
