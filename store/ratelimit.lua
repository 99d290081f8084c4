-- Sliding-window-counter rate limit: one atomic check on one hash key (see store/ratelimit.py).
-- KEYS[1] = the counter hash; ARGV = limit, window_s, cost.
-- Returns {allowed 0|1, remaining, t seconds (1..window)}.

-- BEGIN ratelimit core
-- Reusable by a bigger per-request script: no KEYS, ARGV or TIME in here; the caller
-- passes the key and the server time (read TIME once per script, not once per limiter).
-- State: one string, five little-endian doubles packed by struct (w = fixed-window index,
-- c = count in window w, p = count in window w-1, l = ms time of the last admission in
-- window w, pl = the same for window w-1); every value is an integer below 2^53, exact in
-- a double. Packed rather than a hash: reading five hash fields with tonumber and writing
-- numbers back formatted them through strtod/printf, a quarter of the per-request
-- script's instructions (callgrind). A key still holding the older hash form (written
-- before a deploy) is read as such and replaced by the packed form on its next write.
-- Every quantity below is "requests x milliseconds", kept in integers so the limit is exact.

-- Milliseconds from now until a request of `cost` would be admitted (no other traffic),
-- given counts that are still alive. Always <= window_ms: by max(l, pl) + window every
-- counted request is older than one window and the estimate is 0.
local function ratelimit_wait_ms(prev, curr, last_prev, last_curr, limit, cost, window_ms, left_ms, now_ms)
  local room = limit - cost - curr
  if room >= 0 then
    if prev * left_ms <= room * window_ms then return 0 end
    -- prev's weight decays linearly to 0 at the end of this window, and drops to 0 at once
    -- when its last request leaves the sliding window (last_prev + window).
    return math.min(left_ms - math.floor(room * window_ms / prev), last_prev + window_ms - now_ms)
  end
  -- Only after this window ends can curr (then the previous window) decay enough, unless
  -- its last request leaves the sliding window first.
  return math.min(left_ms + window_ms - math.floor((limit - cost) * window_ms / curr),
                  last_curr + window_ms - now_ms)
end

-- `prefetched`: the key's value if the caller already read it (an MGET of its own); when
-- it is absent (nil or false: no key, or a key in the older hash form) the key is read here.
local function ratelimit_hit(key, now_ms, limit, window_ms, cost, prefetched)
  local index = math.floor(now_ms / window_ms)
  local left_ms = (index + 1) * window_ms - now_ms
  local stored, curr, prev, last_curr, last_prev
  local packed = prefetched or redis.pcall('GET', key)
  if type(packed) == 'string' then
    stored, curr, prev, last_curr, last_prev = struct.unpack('<ddddd', packed)
  else
    local state = {false, false, false, false, false}
    if packed and packed.err then  -- the older hash form (WRONGTYPE for GET)
      state = redis.call('HMGET', key, 'w', 'c', 'p', 'l', 'pl')
    end
    stored = tonumber(state[1])
    curr, prev = tonumber(state[2]) or 0, tonumber(state[3]) or 0
    -- A key written before l/pl existed: assume the latest possible times (never looser).
    last_curr = tonumber(state[4]) or math.min(now_ms, ((stored or index) + 1) * window_ms - 1)
    last_prev = tonumber(state[5]) or (index * window_ms - 1)
  end
  -- stored > index only if the server clock stepped back (failover): keep counting, never reset.
  local same_window = stored ~= nil and stored >= index
  if not same_window then
    if stored == index - 1 then
      prev, last_prev = curr, last_curr
    else
      prev = 0
    end
    curr = 0
  end
  -- A count whose last request is a full window old holds no request of the sliding
  -- window (now - W, now]: it no longer counts, however much weight the estimate gives it.
  -- (The current window's count is always alive: its requests are all younger than W.)
  if last_prev <= now_ms - window_ms then prev = 0 end
  local used = prev * left_ms + curr * window_ms
  local allowed = used + cost * window_ms <= limit * window_ms
  -- A denied check writes nothing: a client hammering while blocked must not extend its block.
  if allowed then
    curr = curr + cost
    used = used + cost * window_ms
    last_curr = now_ms
    if same_window then  -- the TTL set when the window rolled stands
      redis.call('SET', key, struct.pack('<ddddd', stored, curr, prev, now_ms, last_prev), 'KEEPTTL')
    else
      redis.call('SET', key, struct.pack('<ddddd', index, curr, prev, now_ms, last_prev), 'PX', 2 * window_ms)
    end
  end
  local remaining = math.max(0, math.floor((limit * window_ms - used) / window_ms))
  local t_ms = left_ms
  if remaining < cost then
    t_ms = ratelimit_wait_ms(prev, curr, last_prev, last_curr, limit, cost, window_ms, left_ms, now_ms)
  end
  -- Above window_ms only if the clock stepped back past stored times; never promise longer.
  t_ms = math.min(t_ms, window_ms)
  return {allowed and 1 or 0, remaining, math.max(1, math.ceil(t_ms / 1000))}
end
-- END ratelimit core

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return ratelimit_hit(KEYS[1], now_ms, tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000, tonumber(ARGV[3]))
