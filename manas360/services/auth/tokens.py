"""Token material: opaque refresh tokens, their reproducible successors, access tokens.

Refresh tokens are 256 random bits, base64url (43 characters), stored only as SHA-256 hex.

Successors. A rotation's successor is not random but derived:

    successor = base64url(HMAC-SHA256(successor_key, child_id.bytes + parent))

where `child_id` is the new token row's random UUID and `successor_key` is derived from the
current JWT secret (a grace retry also tries the previous JWT keys, so a key rotation
during a tab race does not look like reuse). Only hashes are stored, yet a second presentation of the immediate
parent within REFRESH_REUSE_GRACE_S reproduces the same successor (same parent, same
child row, same key), so racing tabs both end up holding the one live token. Without the
server-side key, or without the child's id (which lives only in the database), a stolen
parent does not yield its successor.

Access tokens carry, besides the registered claims, `iat_ms`: the issue time in
milliseconds. Token epochs (logout-all, password change) are milliseconds too, and a
token is dead when `iat_ms <= epoch`; whole seconds would kill a token issued later in the
same second as the epoch. A token without a plausible `iat_ms` falls back to `iat * 1000`,
the earliest it can have been issued, so imprecision only ever errs towards "revoked".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from manas360.clock import Clock, epoch_ms, to_ms
from manas360.security.jwt import AccessTokenCodec, KeySet, token_issued_ms
from manas360.services.accounts.users import User
from manas360.settings import Settings

REFRESH_TOKEN_BYTES = 32
_SUCCESSOR_CONTEXT = b"manas360 refresh-token successor v1"


class Assurance(NamedTuple):
    """How a session's user last proved who they are: the access token's `auth_time`, `amr`
    and `aal` claims, kept on the session row so a refresh carries them on."""

    auth_time: datetime
    """The database's clock when the credential was presented."""
    amr: tuple[str, ...]
    aal: int


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User

    def as_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "user": self.user.as_dict(),
        }


def build_codec(settings: Settings) -> AccessTokenCodec:
    """The worker's access-token codec: current key signs, every configured key verifies."""
    keyset = KeySet(current_kid=settings.jwt_key_id, keys=settings.verification_keys)
    return AccessTokenCodec(
        keyset=keyset,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_s=settings.jwt_access_ttl,
        cache_size=settings.token_cache_size,
    )


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def successor_keys(settings: Settings) -> list[bytes]:
    """Successor keys, current first; previous JWT keys keep a grace retry working across a key rotation."""
    return [
        hmac.new(secret.encode("utf-8"), _SUCCESSOR_CONTEXT, hashlib.sha256).digest()
        for secret in settings.verification_keys.values()
    ]


def derive_successor(*, key: bytes, parent: str, child_id: uuid.UUID) -> str:
    """The successor of `parent` stored as row `child_id` (reproducible, see module doc)."""
    digest = hmac.new(key, child_id.bytes + parent.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint_access_token(
    *,
    codec: AccessTokenCodec,
    clock: Clock,
    user_id: str,
    session_id: str,
    assurance: Assurance,
    not_before_ms: int = 0,
) -> str:
    """Sign an access token issued now, or at `not_before_ms` if the clock is behind it (never
    before its own `auth_time`)."""
    auth_time_s = to_ms(assurance.auth_time) // 1000
    issued_ms = max(to_ms(clock.now()), not_before_ms, auth_time_s * 1000)
    token, _ = codec.encode(
        user_id=user_id,
        session_id=session_id,
        now=issued_ms / 1000,
        extra={"iat_ms": issued_ms},
        auth_time=auth_time_s,
        amr=assurance.amr,
        aal=assurance.aal,
    )
    return token


def issued_ms(claims: dict[str, Any]) -> int:
    """The token's issue time in ms: `iat_ms` when consistent with `iat`, else `iat * 1000`."""
    return token_issued_ms(claims)


def issue_pair(
    *,
    settings: Settings,
    codec: AccessTokenCodec,
    clock: Clock,
    user: User,
    session_id: str,
    refresh_token: str,
    assurance: Assurance,
    not_before_ms: int = 0,
) -> TokenPair:
    """A fresh access token for the session, with the given refresh token and user.

    The token is issued after the user's STORED epoch (`tokens_valid_after`, written by
    PostgreSQL's clock): a worker whose clock is behind the database's would otherwise mint
    a token that is born revoked.
    """
    not_before_ms = max(not_before_ms, epoch_ms(user.tokens_valid_after) + 1)
    access_token = mint_access_token(
        codec=codec,
        clock=clock,
        user_id=user.id,
        session_id=session_id,
        assurance=assurance,
        not_before_ms=not_before_ms,
    )
    return TokenPair(
        access_token=access_token, refresh_token=refresh_token, expires_in=settings.jwt_access_ttl, user=user
    )
