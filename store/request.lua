-- Everything one authenticated request needs from Redis, in one round trip, on keys that
-- all carry the user's hash tag {u:<id>} (one slot: runs unchanged on Redis Cluster).
-- KEYS[1] revocations-loaded marker   KEYS[2] token epoch (ms)
-- KEYS[3] the token's jti denylist    KEYS[4] its session's denylist
-- KEYS[5] the user context hash       KEYS[6] the user's `api` rate-limit counter
-- KEYS[7] the user's cache generation
-- ARGV[1] the token's issue time (ms)  ARGV[2] api limit  ARGV[3] api window (s)
-- Returns {loaded, revoked, role, plan, plan_end_ms, status, allowed, remaining, t, gen}; a
-- revoked token is not counted against the limit (allowed, remaining, t are 0).
-- `gen` (only on a context miss) is what the caller's fill must find unchanged.

--#include access
--#include ratelimit

local loaded, revoked = access_revocation(KEYS[1], KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[1]))
local ctx = redis.call('HMGET', KEYS[5], 'role', 'plan', 'plan_end_ms', 'status')
local gen = false
if not ctx[1] then
  gen = redis.call('GET', KEYS[7]) or '0'
end
if revoked == 1 then
  -- Not counted against the limit; the context still says whether the account is disabled.
  return {loaded, 1, ctx[1], ctx[2], ctx[3], ctx[4], 0, 0, 0, gen}
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local verdict = ratelimit_hit(KEYS[6], now_ms, tonumber(ARGV[2]), tonumber(ARGV[3]) * 1000, 1)
return {loaded, 0, ctx[1], ctx[2], ctx[3], ctx[4], verdict[1], verdict[2], verdict[3], gen}
