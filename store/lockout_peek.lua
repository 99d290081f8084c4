-- Milliseconds left on one source's lock and on the account-wide lock of a login identity
-- (locks set before the last clear do not count). KEYS: as lockout_reserve.lua.
-- Returns {source ms, account ms}. Reads only.

--#include lockout_common
local now_ms, cleared = clock()
return {lock_left(KEYS[5], cleared), lock_left(KEYS[2], cleared)}
