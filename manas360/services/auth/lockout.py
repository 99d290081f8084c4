"""Lockout: failed credential checks counted per account AND source, with an account-wide
ceiling, so nobody can keep an owner out from one address.

- Per source (the client's IPv4 address or IPv6 prefix): LOCKOUT_THRESHOLD failures for one
  account from one source within LOCKOUT_WINDOW_S lock that account for that source for
  LOCKOUT_DURATION_S. Other sources are not locked by it.
- Account-wide: LOCKOUT_ACCOUNT_THRESHOLD failures from all sources within the window lock
  the account everywhere for the same duration, except from a source that completed a login
  of this account within LOCKOUT_KNOWN_SOURCE_S (it keeps only its own limit). The owner is
  mailed once when such a lock starts.

Every check (password, second-factor code) is RESERVED before it runs: an atomic script
refuses it (423) when this source or the account is locked, or when the failures in the
window plus the checks in flight reach a threshold; so whatever the concurrency, at most the
threshold is evaluated per source, and the account-wide threshold per account. After the
check a failure becomes a counted failure (the threshold-th one locks and still answers
401), a success releases it. A reservation whose worker died lapses after
RESERVATION_TTL_S; a cancelled request releases its own. Attempts while locked are answered
423 and not counted, so hammering does not extend a lock. Unknown emails are counted and
answered exactly like known ones.

Durability: a known account's locks are also written to PostgreSQL (the account-wide one to
`user_accounts.locked_until`, a source's to `account_source_locks`, by the database's clock)
in the transaction that holds the user row while the failure is counted; an unlock or a
confirmed reset takes the same row lock and clears both, so the two cannot interleave. Both
are checked, so a Redis flush unlocks nothing. (An unknown email's locks live in Redis
only.)
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import timedelta

from loguru import logger
from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.after_commit import run_to_completion
from manas360.db import Database
from manas360.errors import AccountLocked, NotFound
from manas360.queries.accounts.users import Credentials
from manas360.queries.auth import login as login_queries
from manas360.services.admin import audit
from manas360.services.auth import sessions
from manas360.services.auth.sessions import Client
from manas360.settings import Settings
from manas360.store import Store, StoreUnavailable
from manas360.store import lockout as lockout_store
from manas360.store.lockout import FailureVerdict, Limits

RESERVATION_TTL_S = 30
"""How long a reservation outlives a worker that died mid-check (far above one bcrypt check
plus the failure's transaction)."""


@dataclass(slots=True)
class Reservation:
    """One reserved credential check of one email from one source."""

    email: str
    source: str
    known: bool
    """The source completed a login of this account recently: spared the account-wide lock."""
    token: str
    settled: bool = False
    """The reservation was turned into a counted failure (nothing left to release)."""


def limits(settings: Settings) -> Limits:
    return Limits(
        settings.lockout_threshold,
        settings.lockout_account_threshold,
        settings.lockout_window_s,
        settings.lockout_duration_s,
    )


def lock_duration(*, settings: Settings) -> timedelta:
    return timedelta(seconds=settings.lockout_duration_s)


def database_lock_ms(account: Credentials | None) -> int:
    """What PostgreSQL says is left of the locks that apply to this source (0: none)."""
    if account is None:
        return 0
    return max(account.source_lock_ms, 0 if account.known_source else account.lock_ms)


async def reserve_check(
    *, settings: Settings, store: Store, email: str, account: Credentials | None, client: Client
) -> Reservation:
    """Reserve one check of the email from the client's source; AccountLocked when locked, or
    when the checks in flight could already reach a threshold (then the check must not run)."""
    locked_ms = database_lock_ms(account)
    if locked_ms > 0:
        raise AccountLocked(math.ceil(locked_ms / 1000))
    known = account is not None and account.known_source
    reservation = Reservation(email=email, source=client.source, known=known, token=uuid.uuid4().hex)
    refusal = await lockout_store.reserve_check(
        store,
        email=email,
        source=client.source,
        known=known,
        reservation=reservation.token,
        limits=limits(settings),
        ttl_s=RESERVATION_TTL_S,
    )
    if refusal is not None:
        raise AccountLocked(math.ceil(refusal.retry_ms / 1000))
    return reservation


async def release_check(*, store: Store, reservation: Reservation) -> None:
    """Release a reservation that did not become a failure; runs even if the request is cancelled."""
    if reservation.settled:
        return
    reservation.settled = True
    try:
        await run_to_completion(
            lockout_store.release_check(
                store, email=reservation.email, source=reservation.source, reservation=reservation.token
            )
        )
    except StoreUnavailable as exc:
        # Not worth a 503 (nor hiding the real answer): the reservation lapses by itself.
        logger.warning(
            "lockout reservation not released ({}); it lapses in {} s", type(exc).__name__, RESERVATION_TTL_S
        )


async def count_failure(
    conn: BaseDBAsyncClient, *, settings: Settings, store: Store, reservation: Reservation, user_id: str | None
) -> FailureVerdict:
    """Turn the reservation into a counted failure (atomic; may lock the source, the account).

    For a known account, under its row lock and in the caller's transaction, which also
    writes the durable locks this failure set: an unlock (same row lock) comes wholly before
    or wholly after, never between the Redis lock and the database one.
    """
    if user_id is not None:
        await sessions.lock_user(conn, user_id=user_id)
    verdict = await lockout_store.record_failure(
        store,
        email=reservation.email,
        source=reservation.source,
        known=reservation.known,
        limits=limits(settings),
        reservation=reservation.token,
    )
    reservation.settled = True
    if user_id is not None:
        if verdict.locked_now:
            await login_queries.set_source_lock(
                conn=conn, user_id=user_id, source=reservation.source, duration_s=settings.lockout_duration_s
            )
        if verdict.account_locked_now:
            await login_queries.set_locked_until(conn=conn, user_id=user_id, duration_s=settings.lockout_duration_s)
    return verdict


async def ensure_unlocked(*, store: Store, account: Credentials, client: Client) -> None:
    """AccountLocked when the client's source may not try the account now (either store)."""
    source_ms, account_ms = await lockout_store.lock_remaining_ms(store, email=account.email, source=client.source)
    locked_ms = max(source_ms, 0 if account.known_source else account_ms, database_lock_ms(account))
    if locked_ms > 0:
        raise AccountLocked(math.ceil(locked_ms / 1000))


async def clear_locks(conn: BaseDBAsyncClient, *, settings: Settings, store: Store, user_id: str) -> str:
    """Lift every lock of the account, every source's, in the caller's transaction with the
    user row locked (PostgreSQL, then Redis); returns the email, for `clear_after_commit`.
    Cleared under the row lock too: a failure counted after this must not add to those before."""
    email = await login_queries.clear_locked_until(conn=conn, user_id=user_id)
    await login_queries.clear_source_locks(conn=conn, user_id=user_id)
    await lockout_store.clear(store, email=email, limits=limits(settings))
    return email


async def clear_after_commit(*, settings: Settings, store: Store, email: str) -> None:
    """The Redis clear again once the transaction committed (should the first have raced a
    failure counted by a transaction that then rolled back)."""
    await run_to_completion(lockout_store.clear(store, email=email, limits=limits(settings)))


async def unlock_account(
    *, db: Database, settings: Settings, store: Store, user_id: str, actor_id: str | None = None, ip: str = ""
) -> None:
    """Lift every lock of an account at once (an administrator, or the command line)."""
    async with db.transaction() as conn:
        # The row lock orders this after any failure being counted (see count_failure).
        if not await sessions.lock_user(conn, user_id=user_id):
            raise NotFound()
        email = await clear_locks(conn, settings=settings, store=store, user_id=user_id)
        await audit.record(conn, action=audit.ACCOUNT_UNLOCKED, actor_id=actor_id, target_user_id=user_id, ip=ip)
    await clear_after_commit(settings=settings, store=store, email=email)
