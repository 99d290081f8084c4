"""Failed-login counters and locks per login identity (an email, known or not).

A sorted set of failure times per identity gives a true sliding window; one Lua script
counts a failure and sets the lock at the threshold atomically. Keys carry the tag
`{login:<sha256(email)>}`, so no address appears in Redis in clear.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from store.client import Store

_SCRIPT = "lockout"
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


async def lock_remaining_ms(store: Store, *, email: str) -> int:
    """Milliseconds left on the identity's lock; 0 when it is not locked."""
    return max(0, int(await store.redis.pttl(store.keys.login_lock(email))))


async def record_failure(store: Store, *, email: str, threshold: int, window_s: int, lock_s: int) -> FailureVerdict:
    """Count a failed login unless already locked; lock at the threshold."""
    keys = store.keys
    state, failures, lock_ms = await store.run_script(
        _SCRIPT,
        keys=[keys.login_failures(email), keys.login_lock(email)],
        args=[threshold, window_s * 1000, lock_s * 1000, uuid.uuid4().hex],
    )
    return FailureVerdict(failures=int(failures), locked_now=state == _LOCKED_NOW,
                          already_locked=state == _ALREADY_LOCKED, lock_ms=int(lock_ms))


async def clear(store: Store, *, email: str) -> None:
    """Remove the identity's failures and lock (an administrator's unlock)."""
    await store.redis.delete(store.keys.login_failures(email), store.keys.login_lock(email))
