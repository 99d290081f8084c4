-- The next reference-data version, atomically: max(current + 1, Redis TIME in microseconds).
-- KEYS[1] = the version key. Returns the new version.
-- INCR restarted at 1 after a flush and could hand out a number a worker already holds for
-- an older catalog (it would never reload). Server time keeps versions strictly increasing
-- and unused across flushes while the clock moves forward; + 1 covers bumps within one
-- microsecond and a clock that stepped back. Microseconds, not milliseconds: a burst of
-- bumps (one script call takes longer than 1 us) never runs ahead of the clock, so a
-- version handed out just before a flush is still below the clock just after it.
-- (~1.8e15 today: exact in a Lua double, which holds integers up to 2^53 = 9.0e15.)
-- A missing key reads 0, no real version.
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local version = math.max(current + 1, now_us)
redis.call('SET', KEYS[1], string.format('%.0f', version))
return version
