"""Login: password check against the lockout, every attempt recorded.

An unknown email and a wrong password take the same path: one lookup, one lockout check,
one bcrypt verification (against a dummy hash when there is no account), one counted
failure, one 401 InvalidCredentials. Nothing in the answer or its timing says whether the
account exists.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import NoReturn

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from manas360 import metrics
from manas360.errors import AccountLocked, InvalidCredentials
from manas360.security.passwords import hash_password, needs_rehash, verify_dummy, verify_password
from manas360.services import audit, lockout, sessions, users
from manas360.services.clock import iso, utcnow
from manas360.services.sessions import Client
from manas360.services.tokens import TokenPair, issue_pair
from manas360.services.users import Credentials


async def login(ctx: SimpleNamespace, *, email: str, password: str, client: Client) -> TokenPair:
    """Exchange an email and password for a new session's token pair."""
    email = users.normalize_email(email)
    account = await users.get_credentials(email=email)
    retry_after = await lockout.seconds_locked(ctx, email=email, locked_until=account and account.locked_until)
    if retry_after:
        async with in_transaction() as conn:
            await _record_attempt(conn, email=email, account=account, client=client, reason="locked")
        raise AccountLocked(retry_after)
    if not await _password_matches(ctx, account=account, password=password):
        await _fail(ctx, email=email, account=account, client=client)
    return await _succeed(ctx, account=account, password=password, client=client, email=email)


async def _password_matches(ctx: SimpleNamespace, *, account: Credentials | None, password: str) -> bool:
    if account is None:
        # Same cost as a real check, so timing does not reveal unknown emails.
        await verify_dummy(password=password, cost=ctx.settings.bcrypt_cost)
        return False
    return await verify_password(password=password, password_hash=account.password_hash)


async def _fail(ctx: SimpleNamespace, *, email: str, account: Credentials | None, client: Client) -> NoReturn:
    """Count the failure (maybe locking), record it, and raise the answer."""
    verdict = await lockout.count_failure(ctx, email=email)
    user_id = account.user_id if account else None
    now = utcnow()
    async with in_transaction() as conn:
        reason = "locked" if verdict.already_locked else "invalid_credentials"
        await _record_attempt(conn, email=email, account=account, client=client, reason=reason)
        if not verdict.already_locked:
            await audit.record(conn, action=audit.LOGIN_FAILED, actor_id=None, target_user_id=user_id, ip=client.ip,
                               after={"email": email, "failures": verdict.failures})
        if verdict.locked_now:
            until = lockout.locked_until(ctx, now=now)
            if account is not None:
                await lockout.set_database_lock(user_id=account.user_id, until=until, conn=conn)
            await audit.record(conn, action=audit.ACCOUNT_LOCKED, actor_id=None, target_user_id=user_id,
                               ip=client.ip, after={"email": email, "locked_until": iso(until)})
    metrics.LOGINS.labels("failure").inc()
    if verdict.locked_now:
        metrics.LOCKOUTS.inc()
    if verdict.already_locked:
        raise AccountLocked(math.ceil(verdict.lock_ms / 1000))
    raise InvalidCredentials()


async def _succeed(ctx: SimpleNamespace, *, account: Credentials, password: str, client: Client,
                   email: str) -> TokenPair:
    settings = ctx.settings
    # An outdated cost (or scheme) is upgraded now, while the password is at hand.
    new_hash = None
    if needs_rehash(password_hash=account.password_hash, cost=settings.bcrypt_cost):
        new_hash = await hash_password(password=password, cost=settings.bcrypt_cost)
    now = utcnow()
    async with in_transaction() as conn:
        session_id, refresh_token = await sessions.open_session(
            conn, user_id=account.user_id, client=client, refresh_ttl_s=settings.jwt_refresh_ttl, now=now)
        await conn.execute_query(
            'UPDATE "user_accounts" SET "last_login_at" = $2, "password_hash" = COALESCE($3, "password_hash") '
            'WHERE "id" = $1', [account.user_id, now, new_hash])
        await _record_attempt(conn, email=email, account=account, client=client, reason="ok", success=True)
        await audit.record(conn, action=audit.LOGIN, actor_id=account.user_id, target_user_id=account.user_id,
                           ip=client.ip, after={"session_id": session_id})
        user = await users.get_user(user_id=account.user_id, conn=conn)
    metrics.LOGINS.labels("success").inc()
    return issue_pair(ctx, user=user, session_id=session_id, refresh_token=refresh_token)


async def _record_attempt(conn: BaseDBAsyncClient, *, email: str, account: Credentials | None, client: Client,
                          reason: str, success: bool = False) -> None:
    await conn.execute_query(
        'INSERT INTO "login_attempts" ("email", "user_id", "success", "reason", "ip", "user_agent") '
        'VALUES ($1, $2, $3, $4, $5, $6)',
        [email[:320], account.user_id if account else None, success, reason, client.ip, client.user_agent])
