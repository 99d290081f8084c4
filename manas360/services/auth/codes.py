"""Second-factor codes: a TOTP code (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of drift
either way) or a recovery code, checked like a password and spent once.

- Spaces and dashes in a code are ignored (`123 456`, `123-456`, `abcd-efgh-...`).
- A TOTP code is accepted once: the time step it matched must be later than the last one
  accepted, compared and set under the user's row lock (manas360.queries.auth.mfa.accept_step);
  a recovery code is spent the same way. Two concurrent uses of one code: one passes.
- Every check is reserved against the lockout of the account and the client's source before
  the code is looked at, and a wrong code counts as a failed login (manas360.services.auth.
  password_check.reject), so concurrency never buys extra guesses.
- Wrong codes also count per account with no window (`user_accounts.mfa_failures`, taken
  before the check, cleared by the next accepted second factor): at NOTIFY_AT in a row the
  owner is mailed (their password is known to someone); from CEILING every code check of
  the account answers 423 until an administrator unlocks it.
- A secret that no configured key opens (MFA_ENCRYPTION_KEY changed without keeping the old
  one) is treated as absent: TOTP codes are refused as wrong (401, counted), recovery codes
  still work, and a warning and the `undecryptable` failure metric say why.

Nothing here logs a secret, a code or a token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

import pyotp
from loguru import logger
from tortoise.backends.base.client import BaseDBAsyncClient

from manas360 import metrics
from manas360.clock import Clock, db_now
from manas360.db import Database
from manas360.errors import AccountLocked
from manas360.queries.accounts.users import Credentials
from manas360.queries.auth import mfa as queries
from manas360.security.secretbox import SecretBox
from manas360.services.admin import audit
from manas360.services.auth import lockout, password_check
from manas360.services.auth.events import notify
from manas360.services.auth.gate import Flow
from manas360.services.auth.lockout import Reservation
from manas360.services.auth.sessions import Client
from manas360.settings import Settings
from manas360.store import Store

DIGITS, STEP_S, DRIFT_STEPS = 6, 30, 1
NOTIFY_AT = 10
"""Wrong codes in a row after which the owner is mailed."""
CEILING = 100
"""Wrong codes in a row from which every code check of the account answers 423 (an admin unlocks)."""
_IGNORED = str.maketrans("", "", " -")


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


class Spent(Exception):
    """The code was right when checked but spent by the time it was used (a replay)."""


def compact(code: str) -> str:
    """The code without the spaces and dashes people type or paste into it."""
    return code.translate(_IGNORED)


def totp_code(code: str) -> str | None:
    """The 6 digits of a TOTP code, or None when `code` is not one."""
    digits = compact(code)
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


def totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (now, or one step either side) whose code this is, or None."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    current = totp.timecode(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def recovery_hash(code: str) -> bytes:
    # Unsalted SHA-256 suffices: a recovery code has 80 random bits (no dictionary to precompute).
    return hashlib.sha256(compact(code).lower().encode()).digest()


async def check_code(
    *, db: Database, box: SecretBox, clock: Clock, user_id: str, code: str, totp_only: bool = False
) -> Match | None:
    """Whether `code` is right for the user's confirmed MFA, changing nothing: the check that
    the reservation guards. None when it is wrong (or cannot be right). `totp_only` refuses
    recovery codes (regenerating them takes a TOTP code)."""
    conn = db.connection
    totp = totp_code(code)
    if totp is None:
        if totp_only:
            return None
        hashed = recovery_hash(code)
        found = await queries.has_recovery_code(conn=conn, user_id=user_id, code_hash=hashed)
        return Match(recovery_hash=hashed) if found else None
    secret = await queries.get_secret(conn=conn, user_id=user_id)
    if secret is None or not secret.confirmed:
        return None
    opened = box.open(secret.sealed, context=user_id.encode())
    if opened is None:
        metrics.MFA_FAILURES.labels("undecryptable").inc()
        logger.warning(
            "the TOTP secret of user {} opens with no configured key (MFA_ENCRYPTION_KEY changed?); "
            "refusing TOTP codes, recovery codes still work",
            user_id,
        )
        return None
    step = totp_step(opened.plaintext.decode(), totp, clock.now())
    if step is None:
        return None
    resealed = seal(box, user_id=user_id, secret=opened.plaintext.decode()) if opened.stale_key else None
    return Match(step=step, resealed=resealed)


def seal(box: SecretBox, *, user_id: str, secret: str) -> bytes:
    # Bound to the user: a sealed secret copied onto another account's row does not open there.
    return box.seal(secret.encode(), context=user_id.encode())


@asynccontextmanager
async def checked_code(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    box: SecretBox,
    clock: Clock,
    account: Credentials,
    code: str,
    client: Client,
    flow: Flow,
    totp_only: bool = False,
) -> AsyncIterator[Match]:
    """A code checked like a password, for the body to spend in its transaction (`spend`):
    the account's code allowance and the lockout reservation taken first, a wrong code counted
    (401, or 423). A code spent meanwhile (Spent, raised by `spend`) counts as wrong."""
    reservation = await password_check.reserve(
        db=db, settings=settings, store=store, email=account.email, account=account, client=client, flow=flow
    )
    try:
        # Counted as wrong until it proves right (`spend` clears it): concurrency never buys a
        # check beyond the ceiling. Taken after the reservation, so a refused one costs nothing.
        async with db.transaction() as conn:
            in_a_row = await queries.take_code_attempt(conn=conn, user_id=account.user_id, ceiling=CEILING)
        if in_a_row is None:
            metrics.MFA_FAILURES.labels("ceiling").inc()
            # No window: the lock lasts until an administrator unlocks (retry_after is a hint).
            raise AccountLocked(settings.lockout_duration_s, "Too many wrong codes: ask an administrator to unlock")
        match = await check_code(db=db, box=box, clock=clock, user_id=account.user_id, code=code, totp_only=totp_only)
        if match is None:
            await _refuse(
                db=db,
                settings=settings,
                store=store,
                reservation=reservation,
                account=account,
                client=client,
                flow=flow,
                reason="wrong_code",
                in_a_row=in_a_row,
            )
        try:
            yield match
        except Spent:
            await _refuse(
                db=db,
                settings=settings,
                store=store,
                reservation=reservation,
                account=account,
                client=client,
                flow=flow,
                reason="replay",
                in_a_row=in_a_row,
            )
    finally:
        await lockout.release_check(store=store, reservation=reservation)


@asynccontextmanager
async def optional_code(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    box: SecretBox,
    clock: Clock,
    account: Credentials,
    code: str | None,
    client: Client,
    flow: Flow,
) -> AsyncIterator[Match | None]:
    """`checked_code` when a code was sent, else None (for flows where a code is optional)."""
    if code is None:
        yield None
        return
    async with checked_code(
        db=db,
        settings=settings,
        store=store,
        box=box,
        clock=clock,
        account=account,
        code=code,
        client=client,
        flow=flow,
    ) as match:
        yield match


async def spend(conn: BaseDBAsyncClient, *, user_id: str, match: Match) -> None:
    """Spend the code under the user's row lock (compare-and-set) and start the account's
    wrong codes from zero; Spent when it already was spent."""
    if match.step is not None:
        if not await queries.accept_step(conn=conn, user_id=user_id, step=match.step):
            raise Spent()
        if match.resealed is not None:
            await queries.reseal(conn=conn, user_id=user_id, sealed=match.resealed)
    elif match.recovery_hash is None or not await queries.use_recovery_code(
        conn=conn, user_id=user_id, code_hash=match.recovery_hash
    ):
        raise Spent()
    await queries.clear_code_failures(conn=conn, user_id=user_id)


async def _refuse(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    reservation: Reservation,
    account: Credentials,
    client: Client,
    flow: Flow,
    reason: str,
    in_a_row: int,
) -> NoReturn:
    """Count a wrong code like a failed login (may lock) and raise 401 (or 423); the owner is
    mailed at the NOTIFY_AT-th wrong code in a row."""
    metrics.MFA_FAILURES.labels(reason).inc()
    if in_a_row == NOTIFY_AT:
        async with db.transaction() as conn:
            await notify(
                conn,
                settings=settings,
                user_id=account.user_id,
                email=account.email,
                notice="wrong_codes",
                client=client,
                when=await db_now(conn),
            )
    await password_check.reject(
        db=db,
        settings=settings,
        store=store,
        reservation=reservation,
        account=account,
        client=client,
        flow=flow,
        action=audit.MFA_FAILED,
        reason=reason,
        message="Wrong code",
    )
