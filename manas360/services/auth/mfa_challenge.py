"""The login's second step: with MFA on, the right first factor earns an `mfa_token`, not a
session.

The token is 256 random bits, handed to the client once and stored only as its SHA-256
(a database leak yields nothing to present), bound to the user and to the first factor it
stands for, valid MFA_TOKEN_TTL_S by the database's clock, dead after ATTEMPTS wrong codes
or any security event of the account (its credential epoch), and spent by the POST
/auth/mfa/verify that completes the login (manas360.services.auth.mfa_verify).
"""

from __future__ import annotations

import hashlib
import secrets

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries.auth import mfa as queries

MFA_TOKEN_TTL_S = 300
ATTEMPTS = 3
"""Codes one mfa_token may be tried with: the third wrong one kills it."""


def token_digest(token: str) -> bytes:
    # Unsalted SHA-256 is enough: the token is 256 random bits, nothing to brute-force.
    return hashlib.sha256(token.encode()).digest()


async def issue(conn: BaseDBAsyncClient, *, user_id: str, amr: tuple[str, ...]) -> str:
    """A new mfa_token for the user, stored hashed in the caller's transaction."""
    token = secrets.token_urlsafe(32)
    await queries.insert_token(
        conn=conn, user_id=user_id, token_hash=token_digest(token), ttl_s=MFA_TOKEN_TTL_S, amr=list(amr)
    )
    return token
