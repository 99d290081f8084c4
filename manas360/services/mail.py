"""The mails the service sends: their text, and queueing them in the outbox.

`queue` writes to the outbox inside the caller's transaction, so a mail commits together
with the token it carries, or neither does; the sender (manas360.services.outbox) delivers
it after the commit. Bodies are plain text holding one link:
`{PUBLIC_BASE_URL}/reset-password?token=<token>` or `{PUBLIC_BASE_URL}/verify-email?token=<token>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries import mail as queries
from manas360.settings import Settings

PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"


@dataclass(frozen=True, slots=True)
class Draft:
    subject: str
    body: str
    kind: str


def link(settings: Settings, *, path: str, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/{path}?token={quote(token, safe='')}"


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
