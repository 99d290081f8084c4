-- Clear every lock and failure of a login identity, every source's included (a reset, an
-- unlock): the account's keys go, and `cleared` moves to now, so the per-source keys (which
-- cannot be listed) stop counting. Checks in flight keep their reservations.
-- KEYS: as lockout_reserve.lua. ARGV: how long `cleared` must outlive them (ms).

--#include lockout_common
local now_ms, cleared = clock()
redis.call('SET', KEYS[7], math.max(now_ms, cleared + 1), 'PX', tonumber(ARGV[1]))
redis.call('DEL', KEYS[1], KEYS[2])
return 1
