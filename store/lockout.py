"""Failed-login counters, locks and in-flight check reservations per login identity (an
email, known or not).

A sorted set of failure times per identity gives a true sliding window. A password check
is reserved before it runs (lockout_reserve.lua: refused when the failures in the window
plus the checks in flight reach the threshold, or when locked); after the check a failure
turns its reservation into a counted failure (lockout.lua, which sets the lock at the
threshold), a success releases it. Keys carry the tag `{login:<sha256(email)>}`, so no
address appears in Redis in clear and the scripts touch one slot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from manas360.store.client import Store, reply_items

_SCRIPT = "lockout"
_RESERVE_SCRIPT = "lockout_reserve"
_COUNTED, _ALREADY_LOCKED, _LOCKED_NOW = 0, 1, 2


@dataclass(frozen=True, slots=True)
class FailureVerdict:
    failures: int
    """Failures in the window, this one included (0 when it was not counted)."""
    locked_now: bool
    """This failure reached the threshold and set the lock."""
    already_locked: bool
    """The identity was locked before this failure; it was not counted."""
    lock_ms: int
    """Milliseconds the lock has left (0 when not locked)."""


def _keys(store: Store, email: str) -> list[str]:
    keys = store.keys
    return [keys.login_failures(email), keys.login_lock(email), keys.login_pending(email)]


async def lock_remaining_ms(store: Store, *, email: str) -> int:
    """Milliseconds left on the identity's lock; 0 when it is not locked."""
    return max(0, int(await store.redis.pttl(store.keys.login_lock(email))))


async def reserve_check(store: Store, *, email: str, reservation: str, threshold: int, window_s: int,
                        ttl_s: int, lock_s: int) -> int:
    """Reserve one password check; 0 when reserved, else the ms to wait (locked or full)."""
    reply = await store.run_script(
        _RESERVE_SCRIPT, keys=_keys(store, email),
        args=[threshold, window_s * 1000, ttl_s * 1000, lock_s * 1000, reservation])
    reserved, retry_ms = reply_items(reply, 2, script=_RESERVE_SCRIPT)
    return 0 if int(reserved) else max(1, int(retry_ms))


async def release_check(store: Store, *, email: str, reservation: str) -> None:
    """Drop a reservation whose check did not fail (a success, or an aborted request)."""
    await store.redis.zrem(store.keys.login_pending(email), reservation)


async def record_failure(store: Store, *, email: str, threshold: int, window_s: int, lock_s: int,
                         reservation: str = "") -> FailureVerdict:
    """Count a failed check (turning its reservation into a failure) unless already locked;
    lock at the threshold."""
    reply = await store.run_script(
        _SCRIPT, keys=_keys(store, email),
        args=[threshold, window_s * 1000, lock_s * 1000, reservation or uuid.uuid4().hex],
    )
    state, failures, lock_ms = reply_items(reply, 3, script=_SCRIPT)
    return FailureVerdict(failures=int(failures), locked_now=state == _LOCKED_NOW,
                          already_locked=state == _ALREADY_LOCKED, lock_ms=int(lock_ms))


async def clear(store: Store, *, email: str) -> None:
    """Remove the identity's failures, lock and reservations (an administrator's unlock)."""
    await store.redis.delete(*_keys(store, email))
