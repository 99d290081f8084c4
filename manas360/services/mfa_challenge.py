"""The login's step-up: with MFA on, the right password earns an `mfa_token`, not a session.

The token is 256 random bits, handed to the client once and stored only as its SHA-256
(a database leak yields nothing to present), bound to the user, valid MFA_TOKEN_TTL_S by
the database's clock and spent by the POST /auth/mfa/verify that completes the login.
"""

from __future__ import annotations

import hashlib
import secrets

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries import mfa as queries

MFA_TOKEN_TTL_S = 300


def token_digest(token: str) -> bytes:
    # Unsalted SHA-256 is enough: the token is 256 random bits, nothing to brute-force.
    return hashlib.sha256(token.encode()).digest()


async def required(conn: BaseDBAsyncClient, *, user_id: str) -> bool:
    """Whether a login of this user needs a second factor (read under the caller's row lock)."""
    return await queries.is_enabled(conn=conn, user_id=user_id)


async def issue(conn: BaseDBAsyncClient, *, user_id: str) -> str:
    """A new mfa_token for the user, stored hashed in the caller's transaction."""
    token = secrets.token_urlsafe(32)
    await queries.insert_token(conn=conn, user_id=user_id, token_hash=token_digest(token), ttl_s=MFA_TOKEN_TTL_S)
    return token


# Audit actions of multi-factor sign-in (admin.mfa_reset is the administrator's).
MFA_CHALLENGED = "auth.mfa_challenged"
MFA_SETUP = "auth.mfa_setup"
MFA_ENABLED = "auth.mfa_enabled"
MFA_CONFIRM_FAILED = "auth.mfa_confirm_failed"
MFA_VERIFIED = "auth.mfa_verified"
MFA_FAILED = "auth.mfa_failed"
MFA_DISABLED = "auth.mfa_disabled"
MFA_RESET = "admin.mfa_reset"
