"""Access tokens: HS256 JWTs signed with a rotating key set, verified through a small cache.

A token carries identity only (`sub` user id, `sid` session id, `jti`) and how that identity
was proved (`auth_time`, `amr`, `aal`: read by step-up, never by the permission gate);
permissions, role and plan are never read from it but loaded per request, and revocation is
checked in Redis per request, so a token proves "who", never "allowed to". The header says
`typ: at+jwt` (RFC 9068), and a token without it is refused: no other JWT, even one signed
with the same key, passes for an access token.

Key rotation: `KeySet(current_kid="k2", keys={"k2": new, "k1": old})` signs with k2 and
still verifies k1 tokens until k1 is dropped from the set.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections import OrderedDict
from typing import Any, NamedTuple

import jwt

from manas360.errors import InvalidToken, TokenExpired
from manas360.settings import DEFAULT_TOKEN_CACHE_SIZE
from manas360.settings_checks import MIN_SECRET_BYTES

ALGORITHM = "HS256"
MAX_TOKEN_CHARS = 8192
MAX_CLOCK_SKEW_S = 30
"""How far a worker's clock may be from the database's (and Redis's) without a token being
refused as not yet valid. Tokens are issued no earlier than the account's stored epoch and
`auth_time` (PostgreSQL's clock), so a worker behind the database mints them `iat` in its
own future; every other time-bound rule is decided on a shared clock (docs/architecture.md,
"Clocks"). Beyond it, keep the hosts' clocks in sync (NTP): the tolerance is not a licence."""
TOKEN_TYPE = "at+jwt"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "auth_time", "amr", "aal")
AAL_VALUES = (1, 2)


class VerifiedToken(NamedTuple):
    """What a verified access token proves: identity and its time bounds, nothing more.

    Immutable: a request cannot change what it was given (the verified-token cache keeps
    the fields and hands out a fresh instance per hit). A NamedTuple rather than a frozen
    dataclass: built on every request, at less than half the cost."""

    user_id: str
    session_id: str
    jti: str
    issued_ms: int
    """`iat_ms` when consistent with `iat`, else `iat * 1000` (see services/auth/tokens.py)."""
    expires_at: float
    """`exp`, in seconds: the token is dead from this instant on."""
    not_before: float
    """The later of `nbf` and `iat`: before this (minus a small leeway) it is not valid yet."""
    auth_time: int
    """When the user last presented a credential in this session (seconds): step-up's clock."""
    aal: int
    """The assurance level of that proof: 2 with a second factor (or a user-verifying passkey)."""

    @property
    def expires_ms(self) -> int:
        return int(self.expires_at * 1000)


_Entry = tuple[str, str, str, int, float, float, int, int]
"""A cached VerifiedToken's fields, in its field order."""


def token_issued_ms(claims: dict[str, Any]) -> int:
    """The token's issue time in ms: `iat_ms` when consistent with `iat`, else `iat * 1000`."""
    floor_ms = int(claims["iat"]) * 1000
    value = claims.get("iat_ms")
    if isinstance(value, int) and not isinstance(value, bool) and floor_ms <= value < floor_ms + 1000:
        return value
    return floor_ms


class KeySet:
    """HMAC secrets by key id: the current one signs, every one verifies."""

    def __init__(self, *, current_kid: str, keys: dict[str, str]) -> None:
        if current_kid not in keys:
            raise ValueError(f"current key id {current_kid!r} is not in the key set")
        for kid, secret in keys.items():
            if not kid or len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
                raise ValueError(f"key {kid!r}: need a kid and a secret of >= {MIN_SECRET_BYTES} bytes")
        self.current_kid = current_kid
        self._keys = {kid: secret.encode("utf-8") for kid, secret in keys.items()}

    @property
    def signing_key(self) -> bytes:
        """Return the secret of the current key."""
        return self._keys[self.current_kid]

    def get(self, kid: str) -> bytes | None:
        """Return the secret for a key id, or None when unknown."""
        return self._keys.get(kid)

    def __repr__(self) -> str:  # never print secrets
        return f"KeySet(current_kid={self.current_kid!r}, kids={sorted(self._keys)!r})"


class AccessTokenCodec:
    """Encode and verify access tokens; verified tokens are cached per instance."""

    def __init__(
        self, *, keyset: KeySet, issuer: str, audience: str, ttl_s: int, cache_size: int = DEFAULT_TOKEN_CACHE_SIZE
    ) -> None:
        self.keyset = keyset
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self.cache_size = cache_size
        # Verified-token cache (PyJWT decode costs ~33-55 us, a hit ~1 us). Safe because:
        # the key is the SHA-256 of the whole token string, signature included, so only
        # byte-identical tokens hit (a second preimage of SHA-256 is out of reach); only
        # tokens that fully verified are stored; exp/nbf are re-checked on every hit;
        # revocation is not cached (checked in Redis per request). It lives on this
        # instance: a new key set means a new codec with an empty cache, so dropping a kid
        # leaves no cached token of that kid valid. Entries are compact (a digest and a
        # tuple of the VerifiedToken's fields): see DEFAULT_TOKEN_CACHE_SIZE. A plain tuple
        # of strings and numbers is untracked by the cyclic GC, so 100,000 entries do not
        # make every full collection walk them (~90 ms a pause, measured, with objects).
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self.hits = 0
        """Verifications answered from the cache (read by the metrics publisher)."""
        self.misses = 0
        """Verifications that ran PyJWT (including the ones that failed)."""

    @property
    def cache_entries(self) -> int:
        return len(self._cache)

    def encode(
        self,
        *,
        user_id: str,
        session_id: str,
        jti: str | None = None,
        now: float | None = None,
        extra: dict[str, Any] | None = None,
        auth_time: int | None = None,
        amr: tuple[str, ...] = ("pwd",),
        aal: int = 1,
    ) -> tuple[str, dict[str, Any]]:
        """Sign an access token; return the token and its claims. `auth_time` (seconds)
        defaults to the issue time, `amr`/`aal` to a password login's."""
        if extra and extra.keys() & set(REQUIRED_CLAIMS):
            raise ValueError("extra claims may not override registered claims")
        issued_at = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            **(extra or {}),
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "sid": session_id,
            "jti": jti or str(uuid.uuid4()),
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self.ttl_s,
            "auth_time": issued_at if auth_time is None else int(auth_time),
            "amr": list(amr),
            "aal": aal,
        }
        token = jwt.encode(
            claims,
            self.keyset.signing_key,
            algorithm=ALGORITHM,
            headers={"kid": self.keyset.current_kid, "typ": TOKEN_TYPE},
        )
        return token, dict(claims)

    def verify(self, token: str, *, now: float | None = None) -> VerifiedToken:
        """Verify a token (through the cache); raise InvalidToken/TokenExpired."""
        # A JWT is base64url and dots: anything else is refused before any parsing.
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidToken()
        now = time.time() if now is None else now
        digest = hashlib.sha256(token.encode("ascii")).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            self.hits += 1
            self._cache.move_to_end(digest)
            verified = VerifiedToken._make(cached)
            self._check_times(verified, now, digest)
            return verified
        self.misses += 1
        claims = self._verify(token)
        verified = VerifiedToken(
            user_id=claims["sub"],
            session_id=claims["sid"],
            jti=claims["jti"],
            issued_ms=token_issued_ms(claims),
            expires_at=claims["exp"],
            not_before=max(claims["nbf"], claims["iat"]),
            auth_time=claims["auth_time"],
            aal=claims["aal"],
        )
        self._check_times(verified, now, digest)
        self._cache[digest] = (
            verified.user_id,
            verified.session_id,
            verified.jti,
            verified.issued_ms,
            verified.expires_at,
            verified.not_before,
            verified.auth_time,
            verified.aal,
        )
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return verified

    def decode(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        """Verify a token and return all of its claims (no cache: not for the hot path)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidToken()
        now = time.time() if now is None else now
        claims = self._verify(token)
        if now >= claims["exp"]:
            raise TokenExpired()
        if max(claims["nbf"], claims["iat"]) > now + MAX_CLOCK_SKEW_S:
            raise InvalidToken()
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        """Check structure, header, signature, iss, aud and claim types (not times)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken() from None
        # Pinned algorithm: refuse anything but HS256 before touching a key, so neither
        # `alg: none` nor another algorithm chosen by the sender is ever considered.
        if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
            raise InvalidToken()
        kid = header.get("kid")
        key = self.keyset.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken()
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                # Times are checked by _check_times against the caller's clock, with our
                # leeways (none for exp), also on cache hits.
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise InvalidToken() from None
        # Identifiers are looked up in PostgreSQL and Redis: anything but a canonical UUID (even
        # one signed with our key, e.g. by a script or an old issuer) is refused here, as a 401,
        # rather than reaching a uuid column as a 500.
        if not all(_is_canonical_uuid(claims[name]) for name in ("sub", "sid", "jti")):
            raise InvalidToken()
        if not all(_is_number(claims[name]) for name in ("iat", "nbf", "exp")):
            raise InvalidToken()
        if not _is_assurance(claims):
            raise InvalidToken()
        return claims

    def _check_times(self, verified: VerifiedToken, now: float, digest: bytes) -> None:
        """Raise TokenExpired past exp (no leeway), InvalidToken before nbf/iat (beyond the skew
        allowed between clocks, MAX_CLOCK_SKEW_S)."""
        if now >= verified.expires_at:
            self._cache.pop(digest, None)
            raise TokenExpired()
        if verified.not_before > now + MAX_CLOCK_SKEW_S:
            raise InvalidToken()


def _is_number(value: Any) -> bool:
    """Return whether a claim is a finite real number (bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_assurance(claims: dict[str, Any]) -> bool:
    """Return whether `auth_time` is a whole number of seconds no later than `iat`, `aal` a
    known level and `amr` a short list of short names."""
    auth_time, aal, amr = claims["auth_time"], claims["aal"], claims["amr"]
    return (
        isinstance(auth_time, int)
        and not isinstance(auth_time, bool)
        and 0 < auth_time <= claims["iat"]
        and aal in AAL_VALUES
        and type(aal) is int
        and isinstance(amr, list)
        and 0 < len(amr) <= 8
        and all(isinstance(m, str) and len(m) <= 16 for m in amr)
    )


def _is_canonical_uuid(value: Any) -> bool:
    """Return whether a claim is a UUID in its canonical form (lowercase, hyphenated)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
