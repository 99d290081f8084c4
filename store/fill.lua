-- Write one user's cached context, unless it was invalidated after the writer read
-- PostgreSQL: a fill (cache miss, warm-cache) that read before an admin's change committed
-- must never land after that change dropped the entry, or the old role/plan/status would
-- live for the whole TTL.
-- KEYS[1] = the user context hash, KEYS[2] = the user's cache generation (both {u:<id>})
-- ARGV = the generation read before PostgreSQL ('0' when there was none), TTL s,
--        role, plan, plan_end_ms, status
-- Returns 1 when written, 0 when the generation moved (the entry stays absent).

if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'role', ARGV[3], 'plan', ARGV[4], 'plan_end_ms', ARGV[5], 'status', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
