"""A credential check guarded by the lockout: reserve, check off the event loop, count a failure.

Used by every flow that checks a password (login, password change, re-authentication) and,
through manas360.services.auth.codes, by every second-factor code check. An unknown email
and a wrong password take the same path: one lookup, one reservation, one bcrypt check
(against a dummy hash when there is no account, and topped up to the current cost's work
when the account's hash is of an older, lower cost), one counted failure, one 401
InvalidCredentials. Nothing in the answer or its timing says whether the account exists.

The check runs outside any lock; what it verified is confirmed later in the flow's write
transaction under the user row lock (`confirm`): the password must still be at the version
checked (a password change in between wins; a mere re-hash at a new cost does not count as
one), and the gate decides the rest.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360 import metrics
from manas360.clock import db_now, iso
from manas360.db import Database
from manas360.errors import AccountLocked, InvalidCredentials
from manas360.queries.accounts.users import Credentials
from manas360.queries.auth import login as login_queries
from manas360.security.passwords import harden_runtime, hash_password, needs_rehash, verify_dummy, verify_password
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import lockout
from manas360.services.auth.events import notify
from manas360.services.auth.gate import Flow
from manas360.services.auth.lockout import Reservation
from manas360.services.auth.sessions import Client
from manas360.settings import Settings
from manas360.store import Store


async def reserve(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    email: str,
    account: Credentials | None,
    client: Client,
    flow: Flow,
) -> Reservation:
    """Reserve the check (lockout); a refusal (423) is recorded (logins) and raised."""
    try:
        return await lockout.reserve_check(settings=settings, store=store, email=email, account=account, client=client)
    except AccountLocked:
        if flow is Flow.LOGIN:
            async with db.transaction() as conn:
                await record_attempt(conn, email=email, account=account, client=client, reason="locked")
        raise


@asynccontextmanager
async def checked_password(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    email: str,
    account: Credentials | None,
    password: str,
    client: Client,
    flow: Flow,
) -> AsyncIterator[Credentials]:
    """The account whose password this is, checked under a lockout reservation held for the
    body (released at its end); a wrong password (or no account) is counted and raised (401,
    or 423 when this failure found the source locked)."""
    reservation = await reserve(
        db=db, settings=settings, store=store, email=email, account=account, client=client, flow=flow
    )
    try:
        if account is None:
            # Same cost as a real check, so timing does not reveal unknown emails.
            await verify_dummy(password=password, cost=settings.bcrypt_cost)
            await reject(
                db=db, settings=settings, store=store, reservation=reservation, account=None, client=client, flow=flow
            )
        if not await verify_password(password=password, password_hash=account.password_hash):
            # A hash at an older, lower cost is checked faster than the dummy: make up the
            # difference, or the time would tell which addresses exist after a cost change.
            await harden_runtime(password=password, password_hash=account.password_hash, cost=settings.bcrypt_cost)
            await reject(
                db=db,
                settings=settings,
                store=store,
                reservation=reservation,
                account=account,
                client=client,
                flow=flow,
            )
        yield account
    finally:
        await lockout.release_check(store=store, reservation=reservation)


async def reject(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    reservation: Reservation,
    account: Credentials | None,
    client: Client,
    flow: Flow,
    action: str = audit.LOGIN_FAILED,
    reason: str = "invalid_credentials",
    message: str | None = None,
) -> NoReturn:
    """Count the failure (maybe locking the source or the account), record it, and raise the
    answer (401, or 423 when the source was already locked)."""
    email = reservation.email
    user_id = account.user_id if account else None
    async with db.transaction() as conn:
        verdict = await lockout.count_failure(
            conn, settings=settings, store=store, reservation=reservation, user_id=user_id
        )
        if flow is Flow.LOGIN:
            await record_attempt(
                conn, email=email, account=account, client=client, reason="locked" if verdict.already_locked else reason
            )
        if not verdict.already_locked:
            await audit.record(
                conn,
                action=action,
                actor_id=None,
                target_user_id=user_id,
                ip=client.ip,
                after={"email": email, "failures": verdict.failures, "via": flow.value, "source": reservation.source},
            )
        if verdict.locked_now:
            until = await db_now(conn) + lockout.lock_duration(settings=settings)
            await audit.record(
                conn,
                action=audit.ACCOUNT_LOCKED,
                actor_id=None,
                target_user_id=user_id,
                ip=client.ip,
                after={"email": email, "locked_until": iso(until), "source": reservation.source},
            )
        if verdict.account_locked_now and account is not None:
            now = await db_now(conn)
            await audit.record(
                conn,
                action=audit.ACCOUNT_LOCKED,
                actor_id=None,
                target_user_id=user_id,
                ip=client.ip,
                after={
                    "email": email,
                    "locked_until": iso(now + lockout.lock_duration(settings=settings)),
                    "source": "*",
                },
            )
            await notify(
                conn,
                settings=settings,
                user_id=account.user_id,
                email=account.email,
                notice="account_locked",
                client=client,
                when=now,
            )
    if flow is Flow.LOGIN:
        metrics.LOGINS.labels("failure").inc()
    if verdict.locked_now or verdict.account_locked_now:
        metrics.LOCKOUTS.inc()
    if verdict.already_locked:
        raise AccountLocked(math.ceil(verdict.lock_ms / 1000))
    raise InvalidCredentials(message)


async def upgraded_hash(*, settings: Settings, account: Credentials, password: str) -> str | None:
    """The password hashed at the current cost when the stored hash is outdated (else None):
    hashed now, while the password is at hand, stored by `confirm` with the session."""
    if needs_rehash(password_hash=account.password_hash, cost=settings.bcrypt_cost):
        return await hash_password(password=password, cost=settings.bcrypt_cost)
    return None


async def confirm(
    conn: BaseDBAsyncClient, *, settings: Settings, checked: Credentials, client: Client, new_hash: str | None = None
) -> Credentials:
    """Lock the user row and re-read the account for the gate: the password must still be the
    version the check saw (a change in between wins: 401). A cost upgrade is stored here,
    compare-and-set on that version, which it does not move."""
    current = await users.lock_credentials(
        conn, user_id=checked.user_id, source=client.source, known_source_s=settings.lockout_known_source_s
    )
    if current is None or current.password_version != checked.password_version:
        raise InvalidCredentials()
    if new_hash is not None:
        await users.rehash_password(conn, user_id=current.user_id, version=current.password_version, new_hash=new_hash)
    return current


async def record_attempt(
    conn: BaseDBAsyncClient,
    *,
    email: str,
    account: Credentials | None,
    client: Client,
    reason: str,
    success: bool = False,
) -> None:
    """One row of login_attempts (the login flow's history, shown to admins and exported)."""
    await login_queries.record_attempt(
        conn=conn,
        email=email[:320],
        user_id=account.user_id if account else None,
        success=success,
        reason=reason,
        ip=client.ip,
        user_agent=client.user_agent,
    )
