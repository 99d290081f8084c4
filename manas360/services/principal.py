"""Who is calling: the bearer token and the identity it proves.

The per-request check built on these (JWT verify, then one Redis round trip answering
revocation, user context and the `api` limit, PostgreSQL on a cold cache) is
`manas360.services.entitlements.authorize`; the revocation part of its script is
`store/access.lua`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from manas360.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: identity only; entitlements are never read from the token."""

    user_id: str
    session_id: str
    jti: str
    claims: dict[str, Any]

    @property
    def expires_ms(self) -> int:
        return int(self.claims["exp"] * 1000)


def bearer_token(authorization_header: str | None) -> str:
    """The token of `Authorization: Bearer <token>`; Unauthorized when absent or another scheme."""
    scheme, _, token = (authorization_header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    return token
