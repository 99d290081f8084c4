"""Who is calling: the bearer token and the identity it proves.

The per-request check built on these (JWT verify, then one Redis round trip answering
revocation, user context and the `api` limit, PostgreSQL on a cold cache) is
`manas360.services.access.entitlements.authorize`; the revocation part of its script is
`store/access.lua`.
"""

from __future__ import annotations

from manas360.errors import Unauthorized
from manas360.security.jwt import VerifiedToken

Principal = VerifiedToken
"""The authenticated caller: identity only (`user_id`, `session_id`, `jti`, `issued_ms`,
`expires_ms`); entitlements are never read from the token. Immutable: the codec's
verified-token cache keeps its fields and hands each request an instance of its own."""


def bearer_token(authorization_header: str | None) -> str:
    """The token of `Authorization: Bearer <token>`; Unauthorized when absent or another scheme."""
    scheme, _, token = (authorization_header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    return token
