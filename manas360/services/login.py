"""Login: password check against the lockout, every attempt recorded.

An unknown email and a wrong password take the same path: one lookup, one reservation of
the check (manas360.services.lockout), one bcrypt verification (against a dummy hash when
there is no account), one counted failure, one 401 InvalidCredentials. Nothing in the
answer or its timing says whether the account exists.

With MFA on, the right password opens no session: under the same row lock the login stores
a single-use `mfa_token` and answers 403 MfaRequired (manas360.services.mfa completes it).

The check runs outside any lock; what it verified is confirmed in the write transaction,
under the user row lock: the hash must be the one verified (a password change in between
wins), the account must not be locked or disabled, and the cost upgrade is a compare-and-
set on the verified hash, so a login can never restore an old password.
"""

from __future__ import annotations

import math
from typing import NoReturn

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from manas360 import metrics
from manas360.clock import Clock, db_now, iso
from manas360.errors import AccountDisabled, AccountLocked, AppError, EmailNotVerified, InvalidCredentials, MfaRequired
from manas360.models import ACCOUNT_ACTIVE
from manas360.queries import login as login_queries
from manas360.queries import users as user_queries
from manas360.security.jwt import AccessTokenCodec
from manas360.security.passwords import hash_password, needs_rehash, verify_dummy, verify_password
from manas360.services import audit, lockout, mfa_challenge, sessions, users, verification
from manas360.services.lockout import Reservation
from manas360.services.sessions import Client
from manas360.services.tokens import TokenPair, issue_pair
from manas360.services.users import Credentials
from manas360.settings import Settings
from manas360.store import Store

LOGIN, PASSWORD_CHANGE = "login", "password_change"


async def login(*, settings: Settings, store: Store, codec: AccessTokenCodec, clock: Clock, email: str, password: str,
                client: Client) -> TokenPair:
    """Exchange an email and password for a new session's token pair."""
    email = users.normalize_email(email)
    account = await users.get_credentials(email=email)
    reservation = await reserve(settings=settings, store=store, email=email, account=account, client=client)
    try:
        matches = await _password_matches(settings=settings, account=account, password=password)
        if account is None or not matches:
            await reject(settings=settings, store=store, reservation=reservation, account=account, client=client)
        return await _succeed(settings=settings, store=store, codec=codec, clock=clock, account=account,
                              password=password, client=client, email=email)
    finally:
        await lockout.release_check(store=store, reservation=reservation)


async def reserve(*, settings: Settings, store: Store, email: str, account: Credentials | None, client: Client,
                  via: str = LOGIN) -> Reservation:
    """Reserve the password check (lockout); a refusal (423) is recorded and raised."""
    try:
        return await lockout.reserve_check(settings=settings, store=store, email=email,
                                           database_lock_ms=account.lock_ms if account else 0)
    except AccountLocked:
        if via == LOGIN:
            async with in_transaction() as conn:
                await _record_attempt(conn, email=email, account=account, client=client, reason="locked")
        raise


async def _password_matches(*, settings: Settings, account: Credentials | None, password: str) -> bool:
    if account is None:
        # Same cost as a real check, so timing does not reveal unknown emails.
        await verify_dummy(password=password, cost=settings.bcrypt_cost)
        return False
    return await verify_password(password=password, password_hash=account.password_hash)


async def reject(*, settings: Settings, store: Store, reservation: Reservation, account: Credentials | None,
                 client: Client, via: str = LOGIN, action: str = audit.LOGIN_FAILED) -> NoReturn:
    """Count the failure (maybe locking), record it, and raise the answer (401, or 423)."""
    email = reservation.email
    user_id = account.user_id if account else None
    async with in_transaction() as conn:
        verdict = await lockout.count_failure(conn, settings=settings, store=store, reservation=reservation,
                                              user_id=user_id)
        reason = "locked" if verdict.already_locked else "invalid_credentials"
        if via == LOGIN:
            await _record_attempt(conn, email=email, account=account, client=client, reason=reason)
        if not verdict.already_locked:
            await audit.record(conn, action=action, actor_id=None, target_user_id=user_id, ip=client.ip,
                               after={"email": email, "failures": verdict.failures, "via": via})
        if verdict.locked_now:
            until = await db_now(conn) + lockout.lock_duration(settings=settings)
            await audit.record(conn, action=audit.ACCOUNT_LOCKED, actor_id=None, target_user_id=user_id,
                               ip=client.ip, after={"email": email, "locked_until": iso(until)})
    if via == LOGIN:
        metrics.LOGINS.labels("failure").inc()
    if verdict.locked_now:
        metrics.LOCKOUTS.inc()
    if verdict.already_locked:
        raise AccountLocked(math.ceil(verdict.lock_ms / 1000))
    raise InvalidCredentials()


async def confirm_check(conn: BaseDBAsyncClient, *, store: Store, account: Credentials) -> Credentials:
    """Lock the user row and confirm a check that passed outside the lock: the same hash
    still stands, and the account is neither locked nor disabled. Raises the refusal."""
    current = await users.lock_credentials(conn, user_id=account.user_id)
    if current is None or current.password_hash != account.password_hash:
        raise InvalidCredentials()
    locked_ms = await lockout.lock_ms(store=store, email=current.email, database_lock_ms=current.lock_ms)
    if locked_ms:
        raise AccountLocked(math.ceil(locked_ms / 1000))
    if current.status != ACCOUNT_ACTIVE:
        raise AccountDisabled()
    return current


async def _succeed(*, settings: Settings, store: Store, codec: AccessTokenCodec, clock: Clock, account: Credentials,
                   password: str, client: Client, email: str) -> TokenPair:
    # An outdated cost (or scheme) is upgraded now, while the password is at hand.
    new_hash = None
    if needs_rehash(password_hash=account.password_hash, cost=settings.bcrypt_cost):
        new_hash = await hash_password(password=password, cost=settings.bcrypt_cost)
    refusal = None
    async with in_transaction() as conn:
        try:
            await confirm_check(conn, store=store, account=account)
            if settings.require_verified_email:  # after the password, lock and status: it tells nothing new
                await verification.ensure_verified(conn, user_id=account.user_id)
        except AppError as exc:
            refusal = exc
            await _record_attempt(conn, email=email, account=account, client=client, reason=_reason(exc))
        else:
            if await mfa_challenge.required(conn, user_id=account.user_id):
                refusal = await _challenge(conn, account=account, client=client, email=email, new_hash=new_hash)
            else:
                session_id, refresh_token = await open_login(conn, settings=settings, account=account,
                                                             client=client, email=email, new_hash=new_hash)
                user = await users.get_held_user(conn, user_id=account.user_id)  # locked by confirm_check
    if refusal is not None:
        if isinstance(refusal, MfaRequired):
            metrics.LOGINS.labels("mfa_required").inc()
        raise refusal
    metrics.LOGINS.labels("success").inc()
    return issue_pair(settings=settings, codec=codec, clock=clock, user=user, session_id=session_id,
                      refresh_token=refresh_token)


async def _challenge(conn: BaseDBAsyncClient, *, account: Credentials, client: Client, email: str,
                     new_hash: str | None) -> MfaRequired:
    """The right password with MFA on: an mfa_token instead of a session (the cost upgrade still lands)."""
    if new_hash is not None:
        await users.replace_password_hash(conn, user_id=account.user_id, verified_hash=account.password_hash,
                                          new_hash=new_hash)
    token = await mfa_challenge.issue(conn, user_id=account.user_id)
    await _record_attempt(conn, email=email, account=account, client=client, reason="mfa_required")
    await audit.record(conn, action=mfa_challenge.MFA_CHALLENGED, actor_id=None, target_user_id=account.user_id,
                       ip=client.ip)
    return MfaRequired(mfa_token=token)


async def open_login(conn: BaseDBAsyncClient, *, settings: Settings, account: Credentials, client: Client,
                     email: str, new_hash: str | None) -> tuple[str, str]:
    """The session, the cost upgrade (compare-and-set), the attempt and the audit entry."""
    now = await db_now(conn)
    session_id, refresh_token = await sessions.open_session(
        conn, user_id=account.user_id, client=client, refresh_ttl_s=settings.jwt_refresh_ttl, now=now)
    await user_queries.touch_last_login(conn=conn, user_id=account.user_id, now=now)
    if new_hash is not None:
        await users.replace_password_hash(conn, user_id=account.user_id, verified_hash=account.password_hash,
                                          new_hash=new_hash)
    await _record_attempt(conn, email=email, account=account, client=client, reason="ok", success=True)
    await audit.record(conn, action=audit.LOGIN, actor_id=account.user_id, target_user_id=account.user_id,
                       ip=client.ip, after={"session_id": session_id})
    return session_id, refresh_token


def _reason(refusal: AppError) -> str:
    return {AccountLocked: "locked", AccountDisabled: "disabled", EmailNotVerified: "unverified"}.get(
        type(refusal), "password_changed")


async def _record_attempt(conn: BaseDBAsyncClient, *, email: str, account: Credentials | None, client: Client,
                          reason: str, success: bool = False) -> None:
    await login_queries.record_attempt(conn=conn, email=email[:320], user_id=account.user_id if account else None,
                                       success=success, reason=reason, ip=client.ip, user_agent=client.user_agent)
