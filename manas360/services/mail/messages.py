"""The mails the service sends: their text, and queueing them in the outbox.

`queue` writes to the outbox inside the caller's transaction, so a mail commits together
with the token it carries, or neither does; the sender (manas360.services.mail.outbox) delivers
it after the commit. The body is sealed at rest (AES-256-GCM under the data key,
`MFA_ENCRYPTION_KEY` or keys derived from the JWT secrets, the recipient as associated data):
a copy of the database yields no link. A mail that carries a token names it, so the mail is
discarded, never sent, once the token is used, voided or expired.

Bodies are plain text. A mail that carries a token holds one link with the token in the URL
fragment (`{PUBLIC_BASE_URL}/reset-password#token=<token>`,
`/verify-email#token=<token>`): browsers never send a fragment to a server, so the token
stays out of access logs and Referer headers on the way to the page that uses it.

Security notices tell the owner, at the address the account had before the change, what
happened to their account, when and from where; their subject says only "Account security"
(a subject is shown on lock screens and in previews) and they carry no token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries.mail import outbox as queries
from manas360.security.secretbox import Opened, SecretBox, derive_key
from manas360.settings import Settings

CHANNEL = "mail"
_KEY_PURPOSE = b"manas360 outbox payload v1"

PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"
SECURITY_NOTICE = "security_notice"
DELETION_SCHEDULED = "deletion_scheduled"
EMAIL_CHANGE_CONFIRM = "email_change_confirm"
EMAIL_CHANGE_NOTICE = "email_change_notice"
EMAIL_TAKEN_NOTICE = "email_taken_notice"
NOTICE_SUBJECT = "Account security"

NOTICES = {
    "password_changed": "The password of your MANAS360 account was changed.",
    "password_reset": "The password of your MANAS360 account was reset with a link sent to this address.",
    "mfa_enabled": "Two-step sign-in (an authenticator app) was turned on for your MANAS360 account.",
    "mfa_disabled": "Two-step sign-in was turned off for your MANAS360 account.",
    "recovery_codes_regenerated": "New recovery codes were made for your MANAS360 account; the old ones no "
    "longer work.",
    "passkey_added": "A passkey was added to your MANAS360 account.",
    "passkey_removed": "A passkey was removed from your MANAS360 account and its other sessions were signed out.",
    "admin_mfa_reset": "An administrator turned two-step sign-in off for your MANAS360 account and signed it "
    "out everywhere.",
    "refresh_token_reused": "A sign-in of your MANAS360 account was used from two places at once, so it was "
    "signed out. Someone may have copied it.",
    "account_locked": "Many wrong passwords or codes were tried for your MANAS360 account, so sign-in is paused "
    "everywhere for a while, except where you signed in recently.",
    "wrong_codes": "Several wrong two-step codes were entered after the right password of your MANAS360 account: "
    "someone may know your password.",
    "deletion_cancelled": "The deletion of your MANAS360 account was cancelled; the account is back.",
    "email_changed": "The address of your MANAS360 account was changed.",
    "email_change_reverted": "A change of the address of your MANAS360 account was undone: the account is back at "
    "this address, signed out everywhere. A link to choose a new password follows in a separate mail.",
    "data_exported": "A copy of everything MANAS360 holds about your account was downloaded.",
}
"""The security notices, by event: what the owner is told happened."""


@dataclass(frozen=True, slots=True)
class Draft:
    subject: str
    body: str
    kind: str


def link(settings: Settings, *, path: str, token: str) -> str:
    """`{PUBLIC_BASE_URL}/<path>#token=<token>`: the token in the fragment, never sent to a server."""
    return f"{settings.public_base_url.rstrip('/')}/{path}#token={quote(token, safe='')}"


def security_notice(settings: Settings, *, event: str, when: datetime, ip: str, user_agent: str) -> Draft:
    """The owner's notice of a security event (a key of NOTICES): what, when, from where."""
    body = (
        f"{NOTICES[event]}\n\n"
        f"When: {when.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}\n"
        f"From: {ip or 'unknown address'}\n"
        f"Device: {user_agent or 'unknown'}\n\n"
        "If this was you, there is nothing to do. If it was not, reset your password now at "
        f"{settings.public_base_url.rstrip('/')}/reset-password and review your sessions.\n"
    )
    return Draft(subject=NOTICE_SUBJECT, body=body, kind=SECURITY_NOTICE)


def deletion_scheduled(
    settings: Settings, *, token: str | None, deletion_at: datetime, when: datetime, ip: str, user_agent: str
) -> Draft:
    """The notice that the account will be erased at `deletion_at`; with the cancel link when the
    owner scheduled it (an administrator's deletion only an administrator cancels)."""
    day = deletion_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if token is not None:
        undo = (
            "To keep your account, open this link before then (you will need your password):\n\n"
            f"{link(settings, path='cancel-deletion', token=token)}\n\n"
        )
    else:
        undo = "An administrator scheduled it; contact support to keep the account.\n\n"
    body = (
        f"Your MANAS360 account is scheduled for deletion. On {day} everything held about it is erased.\n\n"
        f"{undo}"
        f"When: {when.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}\n"
        f"From: {ip or 'unknown address'}\n"
        f"Device: {user_agent or 'unknown'}\n"
    )
    return Draft(subject=NOTICE_SUBJECT, body=body, kind=DELETION_SCHEDULED)


def email_change_confirm(settings: Settings, *, token: str) -> Draft:
    """To the new address: the link that confirms it (signed in as the account)."""
    minutes = settings.email_change_ttl_s // 60
    body = (
        "Someone (hopefully you) asked to move a MANAS360 account to this address.\n\n"
        f"To confirm, open this link within {minutes} minutes, signed in to that account:\n\n"
        f"{link(settings, path='confirm-email', token=token)}\n\n"
        "If it was not you, ignore this mail: nothing changes.\n"
    )
    return Draft(subject="Confirm your new email address", body=body, kind=EMAIL_CHANGE_CONFIRM)


def email_change_notice(
    settings: Settings, *, token: str, new_email: str, when: datetime, ip: str, user_agent: str
) -> Draft:
    """To the old address: the change was asked for, and the link that cancels or reverts it."""
    days = max(1, settings.email_change_revert_s // 86400)
    body = (
        f"Someone asked to change the address of your MANAS360 account to {new_email}.\n\n"
        f"When: {when.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}\n"
        f"From: {ip or 'unknown address'}\n"
        f"Device: {user_agent or 'unknown'}\n\n"
        f"If it was not you, open this link (it works for {days} days, even after the change is confirmed): "
        "it stops the change, or gives the account back to this address, signs it out everywhere and "
        "removes what was added since:\n\n"
        f"{link(settings, path='cancel-email-change', token=token)}\n"
    )
    return Draft(subject=NOTICE_SUBJECT, body=body, kind=EMAIL_CHANGE_NOTICE)


def email_taken_notice(settings: Settings) -> Draft:
    """To an address another account asked to move to, when an account already uses it."""
    body = (
        "Someone asked to move a MANAS360 account to this address, but this address already belongs to an "
        "account, so nothing was changed.\n\n"
        "If it was you, sign in with this address instead. Otherwise there is nothing to do.\n"
    )
    return Draft(subject=NOTICE_SUBJECT, body=body, kind=EMAIL_TAKEN_NOTICE)


def password_reset(settings: Settings, *, token: str) -> Draft:
    minutes = settings.password_reset_ttl_s // 60
    body = (
        "Someone (hopefully you) asked to reset the password of your MANAS360 account.\n\n"
        f"To choose a new password, open this link within {minutes} minutes:\n\n"
        f"{link(settings, path='reset-password', token=token)}\n\n"
        "The link works once. If you did not ask for it, ignore this mail: your password stays as it is.\n"
    )
    return Draft(subject="Reset your MANAS360 password", body=body, kind=PASSWORD_RESET)


def email_verification(settings: Settings, *, token: str) -> Draft:
    hours = settings.email_verify_ttl_s // 3600
    validity = f"{hours} hours" if hours >= 2 else f"{settings.email_verify_ttl_s // 60} minutes"
    body = (
        "Please confirm that this address belongs to your MANAS360 account.\n\n"
        f"Open this link within {validity}:\n\n"
        f"{link(settings, path='verify-email', token=token)}\n\n"
        "If you did not create an account, ignore this mail.\n"
    )
    return Draft(subject="Confirm your email address", body=body, kind=EMAIL_VERIFICATION)


def payload_box(settings: Settings) -> SecretBox:
    """The key ring outbox payloads are sealed with: the data key ring, as for TOTP secrets
    (`Settings.data_key_secrets`), under a purpose of its own."""
    return _box(settings.data_key_secrets)


@lru_cache(maxsize=8)
def _box(secrets: tuple[str, ...]) -> SecretBox:
    return SecretBox(derive_key(secret.encode(), purpose=_KEY_PURPOSE) for secret in secrets)


def seal(settings: Settings, *, recipient: str, body: str) -> bytes:
    # Bound to the recipient: a sealed body copied onto another row does not open there.
    return payload_box(settings).seal(body.encode(), context=recipient.encode())


def open_body(settings: Settings, *, recipient: str, sealed: bytes) -> Opened | None:
    """The sealed body, or None when no configured key opens it."""
    return payload_box(settings).open(sealed, context=recipient.encode())


async def queue(
    conn: BaseDBAsyncClient,
    *,
    settings: Settings,
    recipient: str,
    draft: Draft,
    user_id: str | None,
    token_id: int | None = None,
) -> int:
    """Put a mail in the outbox within the caller's transaction, sealed; its id. `token_id`:
    the one-time token the mail carries (the mail dies with it)."""
    return await queries.insert(
        conn=conn,
        channel=CHANNEL,
        recipient=recipient,
        subject=draft.subject,
        payload_sealed=seal(settings, recipient=recipient, body=draft.body),
        kind=draft.kind,
        user_id=user_id,
        token_id=token_id,
    )
