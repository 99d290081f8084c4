-- Reserve one credential check of one login identity from one source, BEFORE the check runs.
-- KEYS: 1 account failures, 2 account lock, 3 account pending, 4 source failures,
--       5 source lock, 6 source pending, 7 cleared (all in the identity's hash tag).
-- ARGV: threshold, account threshold, window ms, reservation ttl ms, lock ms, reservation,
--       known (1: the source completed a login of this account recently).
-- Failures (sorted sets) are scored, and locks valued, by the millisecond they were counted
-- or set (never at or before the last clear); anything at or before `cleared` (a reset, an unlock) no longer counts. Pending
-- sets hold one member per check in flight, scored by when its reservation lapses (ms).
-- Returns {1, 0, 0} when reserved; {0, retry ms, scope} when refused, scope 1 = this source,
-- 2 = the whole account: locked, or the failures in the window plus the checks in flight
-- already reach the threshold (so concurrency never buys a guess beyond the threshold).
-- A known source ignores the account-wide lock and count: it keeps only its own.

--#include lockout_common
local threshold, account_threshold = tonumber(ARGV[1]), tonumber(ARGV[2])
local window_ms, ttl_ms, lock_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local known = ARGV[7] == '1'
local now_ms, cleared = clock()

local left = lock_left(KEYS[5], cleared)
if left > 0 then return {0, left, 1} end
if not known then
  left = lock_left(KEYS[2], cleared)
  if left > 0 then return {0, left, 2} end
end
local source_count = live_count(KEYS[4], KEYS[6], now_ms, window_ms, cleared)
local account_count = live_count(KEYS[1], KEYS[3], now_ms, window_ms, cleared)
if source_count >= threshold then return {0, lock_ms, 1} end
if not known and account_count >= account_threshold then return {0, lock_ms, 2} end
for _, pending in ipairs({KEYS[6], KEYS[3]}) do
  redis.call('ZADD', pending, now_ms + ttl_ms, ARGV[6])
  redis.call('PEXPIRE', pending, ttl_ms)
end
return {1, 0, 0}
