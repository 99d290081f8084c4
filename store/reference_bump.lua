-- The next reference-data version, atomically: max(current + 1, Redis TIME in ms).
-- KEYS[1] = the version key. Returns the new version.
-- INCR restarted at 1 after a flush and could hand out a number a worker already holds for
-- an older catalog (it would never reload). Server time keeps versions strictly increasing
-- and unused across flushes while the clock moves forward; + 1 covers several bumps within
-- one millisecond and a clock that stepped back. A missing key reads 0, no real version.
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local version = math.max(current + 1, now_ms)
redis.call('SET', KEYS[1], string.format('%.0f', version))
return version
