"""Multi-factor sign-in with TOTP: enrolment, turning it off, recovery codes, an admin reset.

- Setup stores a new secret, sealed (manas360.security.secretbox), as pending, and returns
  it with its otpauth:// URI and that URI as a QR code (SVG); confirming it with a current
  code turns MFA on and returns ten recovery codes, stored only as SHA-256 hashes (80 random
  bits each: nothing to brute-force offline, and online guesses hit the lockout).
- Setup, confirm, disable and regenerating recovery codes are step-up operations
  (manas360.services.auth.stepup): a stolen access token alone cannot enrol its own
  authenticator or turn the owner's off. Disabling takes a current TOTP or recovery code,
  regenerating a current TOTP code, each checked like a password
  (manas360.services.auth.codes).
- MFA on, MFA off and new recovery codes are security events: every other session of the
  account is revoked, every one-time link voided, the owner mailed. An administrator's reset
  revokes every session.

Nothing here logs a secret, a code or a token.
"""

from __future__ import annotations

import io
import secrets
from base64 import b32encode
from dataclasses import dataclass

import pyotp
import segno
from tortoise.backends.base.client import BaseDBAsyncClient

from manas360 import metrics
from manas360.clock import Clock
from manas360.db import Database
from manas360.errors import InvalidCredentials, MfaAlreadyEnabled
from manas360.queries.accounts.users import Credentials
from manas360.queries.auth import mfa as queries
from manas360.security.secretbox import SecretBox, derive_key
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import codes, events, stepup
from manas360.services.auth.codes import DIGITS, STEP_S
from manas360.services.auth.events import Event, Revocation
from manas360.services.auth.gate import Flow
from manas360.services.auth.principal import Principal
from manas360.services.auth.sessions import Client
from manas360.settings import Settings
from manas360.store import Store

ISSUER = "MANAS360"
RECOVERY_CODES = 10
_RECOVERY_BYTES = 10  # 80 bits: 16 base32 characters, shown as four groups of four
_KEY_PURPOSE = b"manas360 mfa totp secret v1"


def build_secret_box(settings: Settings) -> SecretBox:
    """The key ring for TOTP secrets, derived from the data key ring (`Settings.data_key_secrets`)."""
    return SecretBox(derive_key(secret.encode(), purpose=_KEY_PURPOSE) for secret in settings.data_key_secrets)


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str
    """The URI as a QR code, an SVG document (what authenticator apps scan)."""


async def setup(*, db: Database, settings: Settings, box: SecretBox, principal: Principal, client: Client) -> Enrolment:
    """A new pending secret for the caller (replacing a pending one); MfaAlreadyEnabled when on."""
    secret = pyotp.random_base32()  # 160 bits, the length RFC 4226 recommends
    async with db.transaction() as conn:
        account = (await stepup.lock_caller(conn, settings=settings, principal=principal)).account
        if account.mfa_enabled:
            raise MfaAlreadyEnabled()
        await queries.store_pending(
            conn=conn, user_id=account.user_id, sealed=codes.seal(box, user_id=account.user_id, secret=secret)
        )
        await audit.record(
            conn, action=audit.MFA_SETUP, actor_id=account.user_id, target_user_id=account.user_id, ip=client.ip
        )
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(name=account.email, issuer_name=ISSUER)
    return Enrolment(secret=secret, otpauth_uri=uri, qr_svg=qr_svg(uri))


def qr_svg(text: str) -> str:
    """`text` as a QR code: a standalone SVG document, black modules on white, no XML declaration."""
    buffer = io.BytesIO()
    segno.make(text, error="m").save(
        buffer, kind="svg", xmldecl=False, svgns=True, scale=4, border=4, light="#fff", title="TOTP setup QR code"
    )
    return buffer.getvalue().decode()


async def confirm(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    box: SecretBox,
    clock: Clock,
    principal: Principal,
    code: str,
    client: Client,
) -> list[str]:
    """Turn MFA on with a current code of the pending secret; the ten recovery codes, shown once."""
    recovery = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    revoked: Revocation | None = None
    async with db.transaction() as conn:
        account = (await stepup.lock_caller(conn, settings=settings, principal=principal)).account
        if account.mfa_enabled:
            raise MfaAlreadyEnabled()
        pending = await queries.get_secret(conn=conn, user_id=account.user_id)
        opened = box.open(pending.sealed, context=account.user_id.encode()) if pending is not None else None
        totp = codes.totp_code(code)
        step = codes.totp_step(opened.plaintext.decode(), totp, clock.now()) if opened and totp else None
        if step is not None:
            await queries.confirm(conn=conn, user_id=account.user_id, step=step)
            await queries.replace_recovery_codes(
                conn=conn, user_id=account.user_id, hashes=[codes.recovery_hash(c) for c in recovery]
            )
            revoked = await events.record(
                conn,
                settings=settings,
                user_id=account.user_id,
                event=Event.MFA_ENABLED,
                client=client,
                email=account.email,
                keep_session=principal.session_id,
            )
        await audit.record(
            conn,
            action=audit.MFA_ENABLED if step is not None else audit.MFA_CONFIRM_FAILED,
            actor_id=account.user_id,
            target_user_id=account.user_id,
            ip=client.ip,
        )
    if revoked is None:
        metrics.MFA_FAILURES.labels("confirm").inc()
        raise InvalidCredentials("Wrong code")
    await events.publish(settings=settings, store=store, revoked=revoked)
    return recovery


async def disable(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    box: SecretBox,
    clock: Clock,
    principal: Principal,
    code: str,
    client: Client,
) -> None:
    """Turn the caller's MFA off with a current TOTP code or an unused recovery code."""
    account = await _step_up(db=db, settings=settings, principal=principal, client=client)
    async with (
        codes.checked_code(
            db=db,
            settings=settings,
            store=store,
            box=box,
            clock=clock,
            account=account,
            code=code,
            client=client,
            flow=Flow.MFA_DISABLE,
        ) as match,
        db.transaction() as conn,
    ):
        current = (await stepup.lock_caller(conn, settings=settings, principal=principal)).account
        await codes.spend(conn, user_id=current.user_id, match=match)
        await queries.turn_off(conn=conn, user_id=current.user_id)
        revoked = await events.record(
            conn,
            settings=settings,
            user_id=current.user_id,
            event=Event.MFA_DISABLED,
            client=client,
            email=current.email,
            keep_session=principal.session_id,
        )
        await audit.record(
            conn,
            action=audit.MFA_DISABLED,
            actor_id=current.user_id,
            target_user_id=current.user_id,
            ip=client.ip,
            after={"factor": match.factor},
        )
    await events.publish(settings=settings, store=store, revoked=revoked)


async def regenerate_recovery_codes(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    box: SecretBox,
    clock: Clock,
    principal: Principal,
    code: str,
    client: Client,
) -> list[str]:
    """Ten new recovery codes for a current TOTP code; the old ones stop working."""
    account = await _step_up(db=db, settings=settings, principal=principal, client=client)
    recovery = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    async with (
        codes.checked_code(
            db=db,
            settings=settings,
            store=store,
            box=box,
            clock=clock,
            account=account,
            code=code,
            client=client,
            flow=Flow.RECOVERY_CODES,
            totp_only=True,
        ) as match,
        db.transaction() as conn,
    ):
        current = (await stepup.lock_caller(conn, settings=settings, principal=principal)).account
        await codes.spend(conn, user_id=current.user_id, match=match)
        await queries.replace_recovery_codes(
            conn=conn, user_id=current.user_id, hashes=[codes.recovery_hash(c) for c in recovery]
        )
        revoked = await events.record(
            conn,
            settings=settings,
            user_id=current.user_id,
            event=Event.RECOVERY_CODES_REGENERATED,
            client=client,
            email=current.email,
            keep_session=principal.session_id,
        )
        await audit.record(
            conn,
            action=audit.MFA_RECOVERY_CODES,
            actor_id=current.user_id,
            target_user_id=current.user_id,
            ip=client.ip,
        )
    await events.publish(settings=settings, store=store, revoked=revoked)
    return recovery


async def reset(
    conn: BaseDBAsyncClient, *, settings: Settings, user_id: str, email: str, actor_id: str | None, client: Client
) -> Revocation:
    """An administrator turns a user's MFA off (in the caller's transaction, rules checked
    there; no actor_id: the command line): secret, recovery codes and outstanding mfa_tokens go,
    every session is revoked."""
    was_enabled = await queries.turn_off(conn=conn, user_id=user_id)
    revoked = await events.record(
        conn, settings=settings, user_id=user_id, event=Event.ADMIN_MFA_RESET, client=client, email=email
    )
    await audit.record(
        conn,
        action=audit.MFA_RESET,
        actor_id=actor_id,
        target_user_id=user_id,
        ip=client.ip,
        before={"mfa_enabled": was_enabled},
        after={"mfa_enabled": False},
    )
    return revoked


async def _step_up(*, db: Database, settings: Settings, principal: Principal, client: Client) -> Credentials:
    """The caller's account, once step-up passes (checked again under the lock by the write)."""
    async with db.transaction() as conn:
        account = (await stepup.lock_caller(conn, settings=settings, principal=principal)).account
    found = await users.get_credentials(
        conn=db.connection,
        user_id=account.user_id,
        source=client.source,
        known_source_s=settings.lockout_known_source_s,
    )
    if found is None or not found.mfa_enabled:
        raise InvalidCredentials("Wrong code")
    return found


def _new_recovery_code() -> str:
    raw = b32encode(secrets.token_bytes(_RECOVERY_BYTES)).decode().lower()
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))
