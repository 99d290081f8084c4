-- Invalidate one user's cached context after a committed change (role, plan, status):
-- bump the user's cache generation, then drop the entry. A fill that read PostgreSQL
-- before the change carries the old generation and is refused (store/fill.lua).
-- KEYS[1] = the user context hash, KEYS[2] = the user's cache generation (both {u:<id>})
-- ARGV[1] = the generation's TTL in s (far longer than any fill can take)

redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
