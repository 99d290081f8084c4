"""The mails the service sends: their text, and queueing them in the outbox.

`queue` writes to the outbox inside the caller's transaction, so a mail commits together
with the token it carries, or neither does; the sender (manas360.services.outbox) delivers
it after the commit. Bodies are plain text. A mail that carries a token holds one link with
the token in the URL fragment (`{PUBLIC_BASE_URL}/reset-password#token=<token>`,
`/verify-email#token=<token>`): browsers never send a fragment to a server, so the token
stays out of access logs and Referer headers on the way to the page that uses it.

Security notices tell the owner, at the address the account had before the change, what
happened to their account, when and from where; their subject says only "Account security"
(a subject is shown on lock screens and in previews) and they carry no token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries import mail as queries
from manas360.settings import Settings

PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"
SECURITY_NOTICE = "security_notice"
NOTICE_SUBJECT = "Account security"

NOTICES = {
    "password_changed": "The password of your MANAS360 account was changed.",
    "password_reset": "The password of your MANAS360 account was reset with a link sent to this address.",
    "mfa_enabled": "Two-step sign-in (an authenticator app) was turned on for your MANAS360 account.",
    "mfa_disabled": "Two-step sign-in was turned off for your MANAS360 account.",
    "recovery_codes_regenerated": "New recovery codes were made for your MANAS360 account; the old ones no "
                                  "longer work.",
    "admin_mfa_reset": "An administrator turned two-step sign-in off for your MANAS360 account and signed it "
                       "out everywhere.",
    "refresh_token_reused": "A sign-in of your MANAS360 account was used from two places at once, so it was "
                            "signed out. Someone may have copied it.",
    "account_locked": "Many wrong passwords or codes were tried for your MANAS360 account, so sign-in is paused "
                      "everywhere for a while, except where you signed in recently.",
    "wrong_codes": "Several wrong two-step codes were entered after the right password of your MANAS360 account: "
                   "someone may know your password.",
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
        f"{settings.public_base_url.rstrip('/')}/reset-password and review your sessions.\n")
    return Draft(subject=NOTICE_SUBJECT, body=body, kind=SECURITY_NOTICE)


def password_reset(settings: Settings, *, token: str) -> Draft:
    minutes = settings.password_reset_ttl_s // 60
    body = (
        "Someone (hopefully you) asked to reset the password of your MANAS360 account.\n\n"
        f"To choose a new password, open this link within {minutes} minutes:\n\n"
        f"{link(settings, path='reset-password', token=token)}\n\n"
        "The link works once. If you did not ask for it, ignore this mail: your password stays as it is.\n")
    return Draft(subject="Reset your MANAS360 password", body=body, kind=PASSWORD_RESET)


def email_verification(settings: Settings, *, token: str) -> Draft:
    hours = settings.email_verify_ttl_s // 3600
    validity = f"{hours} hours" if hours >= 2 else f"{settings.email_verify_ttl_s // 60} minutes"
    body = (
        "Please confirm that this address belongs to your MANAS360 account.\n\n"
        f"Open this link within {validity}:\n\n"
        f"{link(settings, path='verify-email', token=token)}\n\n"
        "If you did not create an account, ignore this mail.\n")
    return Draft(subject="Confirm your email address", body=body, kind=EMAIL_VERIFICATION)


async def queue(conn: BaseDBAsyncClient, *, recipient: str, draft: Draft, user_id: str | None) -> int:
    """Put a mail in the outbox within the caller's transaction; its id."""
    return await queries.insert_mail(conn=conn, recipient=recipient, subject=draft.subject, body=draft.body,
                                     kind=draft.kind, user_id=user_id)
