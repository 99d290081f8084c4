-- Everything one authenticated request needs from Redis, in one round trip.
-- KEYS[1..7] carry the user's hash tag {u:<id>} (one slot):
-- KEYS[1] revocations-loaded marker   KEYS[2] token epoch (ms)
-- KEYS[3] the token's jti denylist    KEYS[4] its session's denylist
-- KEYS[5] the user context hash       KEYS[6] the user's `api` rate-limit counter
-- KEYS[7] the user's cache generation
-- Single node only (other slots; on a cluster the caller sends these as separate commands
-- in the same flush and passes 7 keys):
-- KEYS[8] the reference-catalog version (optional)
-- KEYS[9] the client's per-IP `global` counter (optional; checked first, as the edge would)
-- ARGV[1] the token's issue time (ms)  ARGV[2] api limit  ARGV[3] api window (s)
-- ARGV[4] global limit  ARGV[5] global window (s)   (with KEYS[9])
-- Returns {loaded, revoked, role, plan, plan_end_ms, status, allowed, remaining, t, gen,
--          g_allowed, g_remaining, g_t, version, now_ms}:
-- a revoked token is not counted against the `api` limit (allowed, remaining, t are 0);
-- a request the `global` limit refuses touches nothing of the user (items 1-10 are 0/false).
-- `gen` (only on a context miss) is what the caller's fill must find unchanged.
-- g_* are 0 and version false when those keys were not passed. now_ms is Redis's clock (false
-- when the request was refused first): the one clock every worker judges a plan's end by.

--#include access
--#include ratelimit

-- Every string value the request needs, in ONE call (each redis.call costs Redis more than
-- the Lua around it): revocation state, the `api` counter, and on a single node the
-- reference version and the client's counter. (The context is a hash: HMGET below.)
local v
if #KEYS >= 9 then
  v = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[8], KEYS[9])
elseif #KEYS == 8 then
  v = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[8])
else
  v = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6])
end
local version = (#KEYS >= 8 and v[6]) or false
local now_ms = false
local g_allowed, g_remaining, g_t = 0, 0, 0
if #KEYS >= 9 then
  local now = redis.call('TIME')
  now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local g = ratelimit_hit(KEYS[9], now_ms, tonumber(ARGV[4]), tonumber(ARGV[5]) * 1000, 1, v[7])
  g_allowed, g_remaining, g_t = g[1], g[2], g[3]
  if g_allowed == 0 then
    return {0, 0, false, false, false, false, 0, 0, 0, false, g_allowed, g_remaining, g_t, version, false}
  end
end
local loaded, revoked = access_revocation(v[1], v[2], v[3], v[4], tonumber(ARGV[1]))
local ctx = redis.call('HMGET', KEYS[5], 'role', 'plan', 'plan_end_ms', 'status')
local gen = false
if not ctx[1] then
  gen = redis.call('GET', KEYS[7]) or '0'
end
if revoked == 1 then
  -- Not counted against the limit; the context still says whether the account is disabled.
  return {loaded, 1, ctx[1], ctx[2], ctx[3], ctx[4], 0, 0, 0, gen, g_allowed, g_remaining, g_t, version, false}
end
if not now_ms then
  local now = redis.call('TIME')
  now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local verdict = ratelimit_hit(KEYS[6], now_ms, tonumber(ARGV[2]), tonumber(ARGV[3]) * 1000, 1, v[5])
return {loaded, 0, ctx[1], ctx[2], ctx[3], ctx[4], verdict[1], verdict[2], verdict[3], gen,
        g_allowed, g_remaining, g_t, version, now_ms}
