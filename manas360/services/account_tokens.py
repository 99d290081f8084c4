"""Single-use account tokens: password reset and email verification.

A token is 256 random bits (base64url, 43 characters), shown once (in the mail that
carries it) and stored only as its SHA-256: a copy of the database yields no usable token,
and 256 bits leave nothing to guess, so a fast hash is enough (no bcrypt needed). Expiry is
the database's clock; a token is used up by the first confirm that commits.
"""

from __future__ import annotations

import hashlib
import secrets

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries import account_tokens as queries

PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"
PURPOSES = [PASSWORD_RESET, EMAIL_VERIFICATION]
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 512


def new_token() -> tuple[str, str]:
    """A fresh token and its hash (the only form stored)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def void_all(conn: BaseDBAsyncClient, *, user_id: str) -> int:
    """Void every outstanding reset and verification token of a user (a disabled account)."""
    return await queries.void_tokens(conn=conn, user_id=user_id, purposes=PURPOSES)
