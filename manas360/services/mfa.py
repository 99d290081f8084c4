"""Multi-factor sign-in with TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of drift
either way), recovery codes, and the second step of a login.

- Setup stores a new secret, sealed (manas360.security.secretbox), as pending; confirming it
  with a current code turns MFA on and returns ten recovery codes, stored only as SHA-256
  hashes (80 random bits each: nothing to brute-force offline, and online guesses hit the
  lockout).
- A TOTP code is accepted once: the time step it matched must be later than the last one
  accepted, compared and set under the user's row lock (manas360.queries.mfa.accept_step),
  so two concurrent verifies of one code cannot both pass. A recovery code is spent the
  same way.
- Verify (completing a login) and disable are guarded like a password check: each is
  reserved against the account's lockout before the code is looked at, and a wrong code
  counts as a failed login (manas360.services.login.reject), so concurrency never buys
  extra guesses and a stolen access token cannot guess its way to turning MFA off.
- A secret that no configured key opens (MFA_ENCRYPTION_KEY changed without keeping the old
  one) is treated as absent: TOTP codes are refused as wrong (401, counted), recovery codes
  still work, and a warning and the `undecryptable` failure metric say why. The user signs
  in with a recovery code, or an administrator resets their MFA; it is never a 500.

Nothing here logs a secret, a code or a token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from base64 import b32encode
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

import pyotp
from loguru import logger
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from manas360 import metrics
from manas360.clock import Clock
from manas360.errors import InvalidCredentials, InvalidToken, MfaAlreadyEnabled, NotFound
from manas360.queries import mfa as queries
from manas360.security.jwt import AccessTokenCodec
from manas360.security.secretbox import SecretBox, derive_key
from manas360.services import audit, login, sessions, users
from manas360.services.lockout import Reservation, release_check
from manas360.services.mfa_challenge import (
    MFA_CONFIRM_FAILED,
    MFA_DISABLED,
    MFA_ENABLED,
    MFA_FAILED,
    MFA_RESET,
    MFA_SETUP,
    MFA_VERIFIED,
    token_digest,
)
from manas360.services.sessions import Client
from manas360.services.tokens import TokenPair, issue_pair
from manas360.services.users import Credentials
from manas360.settings import Settings
from manas360.store import Store

ISSUER = "MANAS360"
DIGITS, STEP_S, DRIFT_STEPS = 6, 30, 1
RECOVERY_CODES = 10
_RECOVERY_BYTES = 10  # 80 bits: 16 base32 characters, shown as four groups of four
_KEY_PURPOSE = b"manas360 mfa totp secret v1"
VERIFY, DISABLE = "mfa_verify", "mfa_disable"


def build_secret_box(settings: Settings) -> SecretBox:
    """The key ring for TOTP secrets: MFA_ENCRYPTION_KEY (when set), then keys derived from
    JWT_SECRET and JWT_PREVIOUS_KEYS (see manas360.security.secretbox)."""
    configured = [settings.mfa_encryption_key.get_secret_value(), *settings.verification_keys.values()]
    return SecretBox(derive_key(secret.encode(), purpose=_KEY_PURPOSE) for secret in configured if secret)


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True, slots=True)
class Match:
    """A code that is right, before it is spent: a TOTP time step or a recovery code's hash."""

    step: int | None = None
    recovery_hash: bytes | None = None
    resealed: bytes | None = None
    """The secret sealed again under the current key (it opened with an older one)."""

    @property
    def factor(self) -> str:
        return "totp" if self.step is not None else "recovery_code"


class _Spent(Exception):
    """The code was right when checked but spent by the time it was used (a replay)."""


async def setup(*, box: SecretBox, user_id: str, client: Client) -> Enrolment:
    """A new pending secret for the caller (replacing a pending one); MfaAlreadyEnabled when on."""
    secret = pyotp.random_base32()  # 160 bits, the length RFC 4226 recommends
    async with in_transaction() as conn:
        account = await _lock_while_off(conn, user_id=user_id)
        await queries.store_pending(conn=conn, user_id=user_id, sealed=_seal(box, user_id=user_id, secret=secret))
        await audit.record(conn, action=MFA_SETUP, actor_id=user_id, target_user_id=user_id, ip=client.ip)
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(name=account.email, issuer_name=ISSUER)
    return Enrolment(secret=secret, otpauth_uri=uri)


async def confirm(*, box: SecretBox, clock: Clock, user_id: str, code: str, client: Client) -> list[str]:
    """Turn MFA on with a current code of the pending secret; the ten recovery codes, shown once."""
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    async with in_transaction() as conn:
        await _lock_while_off(conn, user_id=user_id)
        pending = await queries.get_secret(conn=conn, user_id=user_id)
        opened = box.open(pending.sealed, context=user_id.encode()) if pending is not None else None
        totp = _totp_code(code)
        step = _totp_step(opened.plaintext.decode(), totp, clock.now()) if opened and totp else None
        if step is not None:
            await queries.confirm(conn=conn, user_id=user_id, step=step)
            await queries.replace_recovery_codes(conn=conn, user_id=user_id,
                                                 hashes=[_recovery_hash(c) for c in codes])
        await audit.record(conn, action=MFA_ENABLED if step is not None else MFA_CONFIRM_FAILED, actor_id=user_id,
                           target_user_id=user_id, ip=client.ip)
    if step is None:
        metrics.MFA_FAILURES.labels("confirm").inc()
        raise InvalidCredentials("Wrong code")
    return codes


async def verify(*, settings: Settings, store: Store, codec: AccessTokenCodec, clock: Clock, box: SecretBox,
                 mfa_token: str, code: str, client: Client) -> TokenPair:
    """Complete a login with its mfa_token and a TOTP or recovery code: a new session's pair."""
    token_hash = token_digest(mfa_token)
    user_id = await queries.find_live_token(conn=connections.get("default"), token_hash=token_hash)
    account = await users.get_credentials(user_id=user_id) if user_id is not None else None
    if user_id is None or account is None:
        metrics.MFA_FAILURES.labels("bad_token").inc()
        raise InvalidToken()
    async with _checked_code(settings=settings, store=store, box=box, clock=clock, account=account, code=code,
                             client=client, via=VERIFY) as match, in_transaction() as conn:
        await sessions.lock_user(conn, user_id=user_id)
        if not await queries.use_token(conn=conn, token_hash=token_hash, user_id=user_id):
            metrics.MFA_FAILURES.labels("bad_token").inc()
            raise InvalidToken()
        await login.confirm_check(conn, store=store, account=account)  # locked, disabled, new password
        await _spend(conn, user_id=user_id, match=match)
        session_id, refresh_token = await login.open_login(conn, settings=settings, account=account, client=client,
                                                           email=account.email, new_hash=None)
        await audit.record(conn, action=MFA_VERIFIED, actor_id=user_id, target_user_id=user_id, ip=client.ip,
                           after={"factor": match.factor, "session_id": session_id})
        user = await users.get_held_user(conn, user_id=user_id)  # locked and confirmed live above
    metrics.LOGINS.labels("success").inc()
    return issue_pair(settings=settings, codec=codec, clock=clock, user=user, session_id=session_id,
                      refresh_token=refresh_token)


async def disable(*, settings: Settings, store: Store, box: SecretBox, clock: Clock, user_id: str, code: str,
                  client: Client) -> None:
    """Turn the caller's MFA off with a current TOTP code or an unused recovery code."""
    account = await users.get_credentials(user_id=user_id)
    if account is None:
        raise InvalidCredentials()
    async with _checked_code(settings=settings, store=store, box=box, clock=clock, account=account, code=code,
                             client=client, via=DISABLE) as match, in_transaction() as conn:
        await sessions.lock_user(conn, user_id=user_id)
        await _spend(conn, user_id=user_id, match=match)
        await queries.turn_off(conn=conn, user_id=user_id)
        await audit.record(conn, action=MFA_DISABLED, actor_id=user_id, target_user_id=user_id, ip=client.ip,
                           after={"factor": match.factor})


async def reset(conn: BaseDBAsyncClient, *, user_id: str, actor_id: str, ip: str) -> None:
    """An administrator turns a user's MFA off (in the caller's transaction, rules checked there)."""
    was_enabled = await queries.turn_off(conn=conn, user_id=user_id)
    await audit.record(conn, action=MFA_RESET, actor_id=actor_id, target_user_id=user_id, ip=ip,
                       before={"mfa_enabled": was_enabled}, after={"mfa_enabled": False})


async def _lock_while_off(conn: BaseDBAsyncClient, *, user_id: str) -> queries.Account:
    """Lock the user row for an enrolment step; MfaAlreadyEnabled when MFA is on."""
    account = await queries.lock_account(conn=conn, user_id=user_id)
    if account is None:
        raise NotFound()
    if account.mfa_enabled:
        raise MfaAlreadyEnabled()
    return account


async def check_code(*, box: SecretBox, clock: Clock, user_id: str, code: str) -> Match | None:
    """Whether `code` is right for the user's confirmed MFA, changing nothing: the check that
    the lockout reservation guards. None when it is wrong (or cannot be right)."""
    conn = connections.get("default")
    totp = _totp_code(code)
    if totp is None:
        recovery_hash = _recovery_hash(code)
        found = await queries.has_recovery_code(conn=conn, user_id=user_id, code_hash=recovery_hash)
        return Match(recovery_hash=recovery_hash) if found else None
    secret = await queries.get_secret(conn=conn, user_id=user_id)
    if secret is None or not secret.confirmed:
        return None
    opened = box.open(secret.sealed, context=user_id.encode())
    if opened is None:
        metrics.MFA_FAILURES.labels("undecryptable").inc()
        logger.warning("the TOTP secret of user {} opens with no configured key (MFA_ENCRYPTION_KEY changed?); "
                       "refusing TOTP codes, recovery codes still work", user_id)
        return None
    step = _totp_step(opened.plaintext.decode(), totp, clock.now())
    if step is None:
        return None
    resealed = _seal(box, user_id=user_id, secret=opened.plaintext.decode()) if opened.stale_key else None
    return Match(step=step, resealed=resealed)


@asynccontextmanager
async def _checked_code(*, settings: Settings, store: Store, box: SecretBox, clock: Clock, account: Credentials,
                        code: str, client: Client, via: str) -> AsyncIterator[Match]:
    """A code checked like a password: the check reserved against the account's lockout
    first, a wrong code counted (401, or 423). The body spends the code in its transaction
    (`_spend`); a code spent meanwhile (_Spent, after the body's rollback) counts as wrong."""
    reservation = await login.reserve(settings=settings, store=store, email=account.email, account=account,
                                      client=client, via=via)
    try:
        match = await check_code(box=box, clock=clock, user_id=account.user_id, code=code)
        if match is None:
            await _refuse(settings=settings, store=store, reservation=reservation, account=account, client=client,
                          via=via, reason="wrong_code")
        try:
            yield match
        except _Spent:
            await _refuse(settings=settings, store=store, reservation=reservation, account=account, client=client,
                          via=via, reason="replay")
    finally:
        await release_check(store=store, reservation=reservation)


async def _spend(conn: BaseDBAsyncClient, *, user_id: str, match: Match) -> None:
    """Spend the code under the user's row lock (compare-and-set); _Spent when it already was."""
    if match.step is not None:
        if not await queries.accept_step(conn=conn, user_id=user_id, step=match.step):
            raise _Spent()
        if match.resealed is not None:
            await queries.reseal(conn=conn, user_id=user_id, sealed=match.resealed)
    elif match.recovery_hash is None or not await queries.use_recovery_code(
            conn=conn, user_id=user_id, code_hash=match.recovery_hash):
        raise _Spent()


async def _refuse(*, settings: Settings, store: Store, reservation: Reservation, account: Credentials,
                  client: Client, via: str, reason: str) -> NoReturn:
    """Count a wrong code like a failed login (may lock) and raise 401 (or 423)."""
    metrics.MFA_FAILURES.labels(reason).inc()
    await login.reject(settings=settings, store=store, reservation=reservation, account=account, client=client,
                       via=via, action=MFA_FAILED)


def _seal(box: SecretBox, *, user_id: str, secret: str) -> bytes:
    # Bound to the user: a sealed secret copied onto another account's row does not open there.
    return box.seal(secret.encode(), context=user_id.encode())


def _totp_code(code: str) -> str | None:
    compact = code.replace(" ", "")
    return compact if len(compact) == DIGITS and compact.isascii() and compact.isdigit() else None


def _totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (now, or one step either side) whose code this is, or None."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    current = totp.timecode(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _new_recovery_code() -> str:
    raw = b32encode(secrets.token_bytes(_RECOVERY_BYTES)).decode().lower()
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def _recovery_hash(code: str) -> bytes:
    # Unsalted SHA-256 suffices: the code has 80 random bits (no dictionary to precompute).
    normalized = "".join(ch for ch in code.lower() if ch not in " -")
    return hashlib.sha256(normalized.encode()).digest()
