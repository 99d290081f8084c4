"""Failed-check counters, locks and in-flight reservations per login identity (an email,
known or not), per source (the client's IPv4 address or IPv6 prefix) and account-wide.

Sorted sets of failure times give true sliding windows. A credential check is reserved
before it runs (lockout_reserve.lua: refused when this source, or the whole account, is
locked, or when the failures in the window plus the checks in flight reach a threshold);
after the check a failure turns its reservation into a counted failure (lockout.lua, which
locks the source at its threshold and the account at the account-wide one), a success
releases it. A clear (lockout_clear.lua) ends every source's lock at once without listing
them: locks and failures stamped at or before the identity's `cleared` time stop counting.
Keys carry the tag `{login:<sha256(email)>}`, so no address appears in Redis in clear and
every script touches one slot. Sources are key parts as the edge computes them (addresses
and prefixes: digits, hex, dots, colons, a slash).
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from manas360.store.client import Store, reply_items

_SCRIPT, _RESERVE_SCRIPT, _PEEK_SCRIPT, _CLEAR_SCRIPT = "lockout", "lockout_reserve", "lockout_peek", "lockout_clear"
_ALREADY_LOCKED, _LOCKED_NOW = 1, 2
SOURCE, ACCOUNT = 1, 2
"""Which lock refused a reservation: this source's, or the account-wide one."""


class Limits(NamedTuple):
    """The lockout's numbers (from the settings)."""

    threshold: int
    account_threshold: int
    window_s: int
    lock_s: int


class Refusal(NamedTuple):
    """A reservation refused: the milliseconds to wait and which lock (SOURCE or ACCOUNT)."""

    retry_ms: int
    scope: int


class FailureVerdict(NamedTuple):
    failures: int
    """This source's failures in the window, this one included (0 when it was not counted)."""
    locked_now: bool
    """This failure reached the threshold and locked the source."""
    already_locked: bool
    """The source (or the account, for a source not known) was locked before this failure; not counted."""
    lock_ms: int
    """Milliseconds the lock has left (0 when not locked)."""
    account_locked_now: bool
    """This failure reached the account-wide threshold and locked the account everywhere."""


def _keys(store: Store, email: str, source: str) -> list[str]:
    keys = store.keys
    stem = keys.login_source(email, source)
    return [
        keys.login_failures(email),
        keys.login_lock(email),
        keys.login_pending(email),
        f"{stem}:fail",
        f"{stem}:lock",
        f"{stem}:pending",
        keys.login_cleared(email),
    ]


async def reserve_check(
    store: Store, *, email: str, source: str, known: bool, reservation: str, limits: Limits, ttl_s: int
) -> Refusal | None:
    """Reserve one credential check; None when reserved, else why not (locked, or full)."""
    reply = await store.run_script(
        _RESERVE_SCRIPT,
        keys=_keys(store, email, source),
        args=[
            limits.threshold,
            limits.account_threshold,
            limits.window_s * 1000,
            ttl_s * 1000,
            limits.lock_s * 1000,
            reservation,
            int(known),
        ],
    )
    reserved, retry_ms, scope = reply_items(reply, 3, script=_RESERVE_SCRIPT)
    return None if int(reserved) else Refusal(max(1, int(retry_ms)), int(scope))


async def release_check(store: Store, *, email: str, source: str, reservation: str) -> None:
    """Drop a reservation whose check did not fail (a success, or an aborted request)."""
    keys = _keys(store, email, source)
    await store.redis.zrem(keys[5], reservation)
    await store.redis.zrem(keys[2], reservation)


async def record_failure(
    store: Store, *, email: str, source: str, known: bool, limits: Limits, reservation: str = ""
) -> FailureVerdict:
    """Count a failed check (turning its reservation into a failure) unless already locked;
    lock the source at its threshold, the account at the account-wide one."""
    reply = await store.run_script(
        _SCRIPT,
        keys=_keys(store, email, source),
        args=[
            limits.threshold,
            limits.account_threshold,
            limits.window_s * 1000,
            limits.lock_s * 1000,
            reservation or uuid.uuid4().hex,
            int(known),
        ],
    )
    state, failures, lock_ms, account_locked = reply_items(reply, 4, script=_SCRIPT)
    return FailureVerdict(
        failures=int(failures),
        locked_now=state == _LOCKED_NOW,
        already_locked=state == _ALREADY_LOCKED,
        lock_ms=int(lock_ms),
        account_locked_now=bool(int(account_locked)),
    )


async def lock_remaining_ms(store: Store, *, email: str, source: str) -> tuple[int, int]:
    """Milliseconds left on this source's lock and on the account-wide lock (0: none)."""
    reply = await store.run_script(_PEEK_SCRIPT, keys=_keys(store, email, source), args=[])
    source_ms, account_ms = reply_items(reply, 2, script=_PEEK_SCRIPT)
    return max(0, int(source_ms)), max(0, int(account_ms))


async def clear(store: Store, *, email: str, limits: Limits) -> None:
    """End every lock and failure count of the identity, every source's (an unlock, a reset)."""
    outlive_ms = (max(limits.window_s, limits.lock_s) + 60) * 1000
    await store.run_script(_CLEAR_SCRIPT, keys=_keys(store, email, "-"), args=[outlive_ms])
