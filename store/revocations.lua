-- Record revocations of one user; every key on the user's hash tag {u:<id>}.
-- KEYS[1] = token epoch, KEYS[2] = revocations-loaded marker, KEYS[3..] = denylist
-- entries (revoked jtis and sessions).
-- ARGV[1] = epoch ms (0: none), ARGV[2] = epoch TTL ms, ARGV[3] = marker TTL ms (0: leave
-- the marker alone), ARGV[4..] = TTL ms of each denylist entry, in KEYS order.
-- Returns the number of denylist entries written.

local epoch, epoch_ttl, marker_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- The epoch only moves forward: a writer holding an older value (a cold-cache load that
-- read PostgreSQL before a newer revocation committed) must never lower it.
if epoch > 0 and epoch_ttl > 0 and epoch > (tonumber(redis.call('GET', KEYS[1])) or 0) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', epoch_ttl)
end
local written = 0
for i = 3, #KEYS do
  local ttl = tonumber(ARGV[i + 1])
  if ttl > 0 then
    redis.call('SET', KEYS[i], '1', 'PX', ttl)
    written = written + 1
  end
end
if marker_ttl > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', marker_ttl)
end
return written
