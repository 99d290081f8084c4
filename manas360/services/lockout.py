"""Account lockout: LOCKOUT_THRESHOLD failed password checks for one email within
LOCKOUT_WINDOW_S lock it for LOCKOUT_DURATION_S.

Algorithm: a sliding window of failure times per email in Redis. Every password check
(login, password change) is RESERVED before bcrypt runs: an atomic script refuses the
check (423) when the email is locked, or when the failures in the window plus the checks
already in flight reach the threshold; otherwise it records the check as pending. After
bcrypt, a failure turns its reservation into a counted failure (the threshold-th one sets
the lock and still answers 401), a success releases it. So whatever the concurrency, at
most LOCKOUT_THRESHOLD wrong passwords are evaluated per email per window. A reservation
whose worker died lapses after RESERVATION_TTL_S; a cancelled request releases its own.
Attempts while locked are answered 423 and not counted, so hammering does not extend the
lock. A successful login does not clear the count: only the window or an administrator
does. Unknown emails are counted and answered exactly like known ones.

Durability: a known account's lock is also written to `user_accounts.locked_until` (by the
database's clock), in the same transaction that holds the user row while the failure is
counted; an unlock takes the same row lock, so the two cannot interleave. Both locks are
checked, so a Redis flush does not unlock an account. (An unknown email's lock lives in
Redis only: after a flush it restarts from zero, the one case where known and unknown
emails can be told apart.)
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import timedelta

from loguru import logger
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from manas360.errors import AccountLocked, NotFound
from manas360.queries import login as login_queries
from manas360.repair import run_to_completion
from manas360.services import audit, sessions
from manas360.settings import Settings
from manas360.store import Store, StoreUnavailable
from manas360.store import lockout as lockout_store
from manas360.store.lockout import FailureVerdict

RESERVATION_TTL_S = 30
"""How long a reservation outlives a worker that died mid-check (far above one bcrypt check
plus the failure's transaction)."""


@dataclass(slots=True)
class Reservation:
    """One reserved password check of one email."""

    email: str
    token: str
    settled: bool = False
    """The reservation was turned into a counted failure (nothing left to release)."""


async def reserve_check(*, settings: Settings, store: Store, email: str, database_lock_ms: int = 0) -> Reservation:
    """Reserve one password check for the email; AccountLocked when locked or when the checks
    in flight could already reach the threshold (then bcrypt must not run)."""
    if database_lock_ms > 0:
        raise AccountLocked(math.ceil(database_lock_ms / 1000))
    reservation = Reservation(email=email, token=uuid.uuid4().hex)
    retry_ms = await lockout_store.reserve_check(
        store, email=email, reservation=reservation.token, threshold=settings.lockout_threshold,
        window_s=settings.lockout_window_s, ttl_s=RESERVATION_TTL_S, lock_s=settings.lockout_duration_s)
    if retry_ms:
        raise AccountLocked(math.ceil(retry_ms / 1000))
    return reservation


async def release_check(*, store: Store, reservation: Reservation) -> None:
    """Release a reservation that did not become a failure; runs even if the request is cancelled."""
    if reservation.settled:
        return
    reservation.settled = True
    try:
        await run_to_completion(lockout_store.release_check(store, email=reservation.email,
                                                            reservation=reservation.token))
    except StoreUnavailable as exc:
        # Not worth a 503 (nor hiding the real answer): the reservation lapses by itself.
        logger.warning("lockout reservation not released ({}); it lapses in {} s", type(exc).__name__,
                       RESERVATION_TTL_S)


async def count_failure(conn: BaseDBAsyncClient, *, settings: Settings, store: Store, reservation: Reservation,
                        user_id: str | None) -> FailureVerdict:
    """Turn the reservation into a counted failure (atomic; may set the lock).

    For a known account, under its row lock and in the caller's transaction, which also
    writes `locked_until` when this failure locked: an unlock (same row lock) comes wholly
    before or wholly after, never between the Redis lock and the database one.
    """
    if user_id is not None:
        await sessions.lock_user(conn, user_id=user_id)
    verdict = await lockout_store.record_failure(
        store, email=reservation.email, threshold=settings.lockout_threshold,
        window_s=settings.lockout_window_s, lock_s=settings.lockout_duration_s, reservation=reservation.token)
    reservation.settled = True
    if verdict.locked_now and user_id is not None:
        await login_queries.set_locked_until(conn=conn, user_id=user_id, duration_s=settings.lockout_duration_s)
    return verdict


def lock_duration(*, settings: Settings) -> timedelta:
    return timedelta(seconds=settings.lockout_duration_s)


async def lock_ms(*, store: Store, email: str, database_lock_ms: int) -> int:
    """Milliseconds until the email may try again (Redis lock or PostgreSQL lock); 0 = not locked."""
    redis_ms = await lockout_store.lock_remaining_ms(store, email=email)
    return max(redis_ms, database_lock_ms, 0)


async def unlock_account(*, store: Store, user_id: str, actor_id: str | None = None, ip: str = "") -> None:
    """Lift an account's lock at once (PostgreSQL, then Redis) and clear its failure count."""
    async with in_transaction() as conn:
        # The row lock orders this after any failure being counted (see count_failure).
        if not await sessions.lock_user(conn, user_id=user_id):
            raise NotFound()
        email = await login_queries.clear_locked_until(conn=conn, user_id=user_id)
        await audit.record(conn, action=audit.ACCOUNT_UNLOCKED, actor_id=actor_id, target_user_id=user_id, ip=ip)
        # Cleared under the row lock too: a failure counted after this unlock must not add to
        # the failures before it. (Should the commit fail, locked_until still locks.)
        await lockout_store.clear(store, email=email)
    await run_to_completion(lockout_store.clear(store, email=email))


async def clear_failures(*, store: Store, email: str) -> None:
    """Clear an email's Redis lock and failure count, as an unlock does: call it under the
    user row lock in the transaction that clears `locked_until`, and again after the commit."""
    await lockout_store.clear(store, email=email)
