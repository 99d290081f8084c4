-- What introspection needs to know about one access token, in one round trip, read from the
-- same keys as store/request.lua but counting nothing (a service asking about a user's token
-- must not spend that user's `api` budget).
-- KEYS[1..6] carry the user's hash tag {u:<id>} (one slot):
-- KEYS[1] revocations-loaded marker   KEYS[2] token epoch (ms)
-- KEYS[3] the token's jti denylist    KEYS[4] its session's denylist
-- KEYS[5] the user context hash       KEYS[6] the user's cache generation
-- KEYS[7] the reference-catalog version (single node only; another slot on a cluster)
-- ARGV[1] the token's issue time (ms)
-- Returns {loaded, revoked, role, plan, plan_end_ms, status, gen, now_ms, version}; `gen`
-- only on a context miss (what the caller's fill must find unchanged), version false
-- without KEYS[7].

--#include access

local v
if #KEYS >= 7 then
  v = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[7])
else
  v = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
end
local loaded, revoked = access_revocation(v[1], v[2], v[3], v[4], tonumber(ARGV[1]))
local ctx = redis.call('HMGET', KEYS[5], 'role', 'plan', 'plan_end_ms', 'status')
local gen = false
if not ctx[1] then
  gen = redis.call('GET', KEYS[6]) or '0'
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return {loaded, revoked, ctx[1], ctx[2], ctx[3], ctx[4], gen, now_ms, (#KEYS >= 7 and v[5]) or false}
