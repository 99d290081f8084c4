-- The per-request access check for one user: one round trip, every key on the user's
-- hash tag {u:<id>} (one slot, so it runs unchanged on Redis Cluster).
-- Included by store/request.lua (the one per-request script); not run on its own.
-- loaded = 0 means Redis may be missing revocations (cold cache, flush, eviction): unless
-- revoked = 1 already, the caller must ask PostgreSQL.

-- BEGIN access core
-- No KEYS or ARGV in here: a bigger per-request script can include it. Takes the values of
-- the marker, epoch, jti and session keys (the caller reads them in its one MGET).
local function access_revocation(marker, epoch_value, jti_entry, session_entry, issued_ms)
  local loaded = marker and 1 or 0
  -- Tokens issued at or before the epoch are dead (logout-all, password change, admin revoke).
  local epoch = tonumber(epoch_value) or 0
  local revoked = (issued_ms <= epoch or jti_entry or session_entry) and 1 or 0
  return loaded, revoked
end
-- END access core
