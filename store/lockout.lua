-- Count one failed credential check of one login identity from one source.
-- KEYS: as lockout_reserve.lua (account failures, lock, pending; source failures, lock,
--       pending; cleared). ARGV: threshold, account threshold, window ms, lock ms,
--       reservation (a unique member), known (1: spared the account-wide lock).
-- Returns {state, source failures in the window, lock ms left, account locked now}:
-- state 0 = counted, 1 = already locked (not counted), 2 = counted and this failure locked
-- the source. Atomic, so concurrent failures lock at exactly the threshold; the
-- reservation becomes the failure (pending shrinks as failures grow). The account-wide
-- count takes every source's failures; reaching its threshold locks the account (once).

--#include lockout_common
local threshold, account_threshold = tonumber(ARGV[1]), tonumber(ARGV[2])
local window_ms, lock_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local member, known = ARGV[5], ARGV[6] == '1'
redis.call('ZREM', KEYS[6], member)
redis.call('ZREM', KEYS[3], member)
local now_ms, cleared = clock()
-- Stamped after the last clear even within its millisecond, so a clear never hides it.
local stamp = math.max(now_ms, cleared + 1)

local left = lock_left(KEYS[5], cleared)
if left == 0 and not known then left = lock_left(KEYS[2], cleared) end
if left > 0 then return {1, 0, left, 0} end

live_count(KEYS[4], KEYS[6], now_ms, window_ms, cleared)
live_count(KEYS[1], KEYS[3], now_ms, window_ms, cleared)
redis.call('ZADD', KEYS[4], stamp, member)
redis.call('ZADD', KEYS[1], stamp, member)
local source_count = redis.call('ZCARD', KEYS[4])
local account_count = redis.call('ZCARD', KEYS[1])

local state, lock_left_ms, account_locked = 0, 0, 0
if source_count >= threshold then
  redis.call('SET', KEYS[5], stamp, 'PX', lock_ms)
  -- Counting starts over once the lock ends.
  redis.call('DEL', KEYS[4])
  state, lock_left_ms = 2, lock_ms
else
  redis.call('PEXPIRE', KEYS[4], window_ms)
end
if account_count >= account_threshold and lock_left(KEYS[2], cleared) == 0 then
  redis.call('SET', KEYS[2], stamp, 'PX', lock_ms)
  redis.call('DEL', KEYS[1])
  account_locked = 1
else
  redis.call('PEXPIRE', KEYS[1], window_ms)
end
return {state, source_count, lock_left_ms, account_locked}
