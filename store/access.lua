-- The per-request access check for one user: one round trip, every key on the user's
-- hash tag {u:<id>} (one slot, so it runs unchanged on Redis Cluster).
-- Included by store/request.lua (the one per-request script); not run on its own.
-- loaded = 0 means Redis may be missing revocations (cold cache, flush, eviction): unless
-- revoked = 1 already, the caller must ask PostgreSQL.

-- BEGIN access core
-- No KEYS or ARGV in here: a bigger per-request script can include it.
local function access_revocation(marker_key, epoch_key, jti_key, session_key, issued_ms)
  local v = redis.call('MGET', marker_key, epoch_key, jti_key, session_key)
  local loaded = v[1] and 1 or 0
  -- Tokens issued at or before the epoch are dead (logout-all, password change, admin revoke).
  local epoch = tonumber(v[2]) or 0
  local revoked = (issued_ms <= epoch or v[3] or v[4]) and 1 or 0
  return loaded, revoked
end
-- END access core
