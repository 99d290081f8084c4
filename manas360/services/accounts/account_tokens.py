"""Single-use account tokens: password reset and email verification.

A token is 256 random bits (base64url, 43 characters), shown once (in the mail that
carries it) and stored only as its SHA-256: a copy of the database yields no usable token,
and 256 bits leave nothing to guess, so a fast hash is enough (no bcrypt needed). Expiry is
the database's clock; a token is used up by the first confirm that commits, and dies with
every security event of its account (the credential epoch, manas360.services.auth.events).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Protocol

from manas360.db import Database
from manas360.queries.accounts import account_tokens as queries
from manas360.queries.accounts.account_tokens import LinkRequest
from manas360.services.admin import audit
from manas360.services.mail.messages import Draft, seal
from manas360.settings import Settings

PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"
PURPOSES = [PASSWORD_RESET, EMAIL_VERIFICATION]
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 512
MAX_LIVE = 3
"""Live links per account and purpose: a newer request drops the oldest beyond, never the others."""


class DraftFor(Protocol):
    """The mail that carries a token (manas360.services.mail.messages.password_reset, bound to its settings)."""

    def __call__(self, *, token: str) -> Draft: ...


def new_token() -> tuple[str, str]:
    """A fresh token and its hash (the only form stored)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def mail_link(
    *,
    db: Database,
    settings: Settings,
    email: str,
    purpose: str,
    draft: DraftFor,
    ttl_s: int,
    verified_too: bool,
    action: str,
    ip: str,
) -> LinkRequest:
    """A new link of `purpose` mailed to a normalised address, when it belongs to an active
    account within its hourly allowance (and unverified, unless `verified_too`): one statement
    (manas360.queries.accounts.account_tokens.REQUEST_LINK_SQL) doing the same work for any address,
    plus one audit entry `action`."""
    token, token_hash = new_token()
    message = draft(token=token)
    sealed = seal(settings, recipient=email, body=message.body)  # stored addresses are normalised like `email`
    async with db.transaction() as conn:
        done = await queries.request_link(
            conn=conn,
            email=email,
            purpose=purpose,
            token_hash=token_hash,
            ttl_s=ttl_s,
            subject=message.subject,
            sealed_body=sealed,
            hourly=settings.mail_per_account_hourly,
            live=MAX_LIVE,
            verified_too=verified_too,
        )
        await audit.record(
            conn,
            action=action,
            actor_id=None,
            target_user_id=done.user_id,
            ip=ip,
            after={"email": email, "mailed": done.user_id is not None},
        )
    return done
