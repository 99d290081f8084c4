"""The keys access tokens are signed and verified with.

`HS256` keys are shared secrets: whoever can verify can also mint, so they never leave this
service. `EdDSA` (Ed25519) and `ES256` (ECDSA P-256) keys are key pairs: the service signs
with the private half, and other services verify with the public half that
`/.well-known/jwks.json` publishes, without being able to mint a token.

Each key has exactly one algorithm, fixed by its type, and a token verifies only with the key
its `kid` names and only under that key's algorithm: a token cannot choose how it is checked
(no `alg` confusion, no `none`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

HMAC = "HS256"
ASYMMETRIC = ("EdDSA", "ES256")
ALGORITHMS = (HMAC, *ASYMMETRIC)
MAX_KID_CHARS = 64


class KeyConfigError(ValueError):
    """A key is malformed or does not fit its algorithm (a one-line message, never the key)."""


@dataclass(frozen=True, slots=True, repr=False)
class SigningKey:
    """One key: its id, its algorithm, what signs and what verifies."""

    kid: str
    alg: str
    private: Any
    """The HMAC secret (bytes) or the private key object."""
    public: Any
    """The HMAC secret again, or the public key object."""

    @property
    def is_asymmetric(self) -> bool:
        return self.alg != HMAC

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517) with `kid`, `alg` and `use`; only for key pairs."""
        if self.alg == "EdDSA":
            jwk = OKPAlgorithm.to_jwk(self.public, as_dict=True)
        elif self.alg == "ES256":
            jwk = ECAlgorithm.to_jwk(self.public, as_dict=True)
        else:
            raise ValueError("an HMAC key has no public half")
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def __repr__(self) -> str:  # never print a secret or a private key
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"


def hmac_key(kid: str, secret: str) -> SigningKey:
    """An HS256 key from its secret."""
    value = secret.encode("utf-8")
    return SigningKey(kid=kid, alg=HMAC, private=value, public=value)


def parse_private_keys(value: str) -> list[SigningKey]:
    """`JWT_PRIVATE_KEYS`: a JSON array of `{"kid", "pem"}` (PKCS#8 PEM), in order (the first
    signs). Raises KeyConfigError naming the entry, never quoting a key."""
    try:
        entries = json.loads(value)
    except ValueError:
        raise KeyConfigError('is not a JSON array of {"kid": ..., "pem": ...}') from None
    if not isinstance(entries, list) or not entries:
        raise KeyConfigError('must be a non-empty JSON array of {"kid": ..., "pem": ...}')
    keys: list[SigningKey] = []
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or set(entry) != {"kid", "pem"}:
            raise KeyConfigError(f"entry {position} must have exactly the keys kid and pem")
        kid, pem = entry["kid"], entry["pem"]
        _check_kid(kid, f"entry {position}")
        if kid in (key.kid for key in keys):
            raise KeyConfigError(f"repeats key id {kid!r}")
        if not isinstance(pem, str):
            raise KeyConfigError(f"key {kid!r}: pem must be a string")
        keys.append(load_private_key(kid, pem))
    return keys


def load_private_key(kid: str, pem: str) -> SigningKey:
    """A key pair from a PKCS#8 PEM private key: Ed25519 → EdDSA, EC P-256 → ES256."""
    try:
        private = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise KeyConfigError(f"key {kid!r} is not an unencrypted PKCS#8 PEM private key") from None
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return SigningKey(kid=kid, alg="EdDSA", private=private, public=private.public_key())
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        return SigningKey(kid=kid, alg="ES256", private=private, public=private.public_key())
    raise KeyConfigError(f"key {kid!r} is neither Ed25519 (EdDSA) nor EC P-256 (ES256)")


def generate_private_key(algorithm: str = "EdDSA", kid: str | None = None) -> dict[str, str]:
    """A new key as one `JWT_PRIVATE_KEYS` element: `{"kid": ..., "pem": ...}`."""
    if algorithm == "EdDSA":
        private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise KeyConfigError(f"algorithm must be one of {', '.join(ASYMMETRIC)}, not {algorithm!r}")
    kid = kid or f"{algorithm.lower()}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    _check_kid(kid, "--kid")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return {"kid": kid, "pem": pem}


def _check_kid(kid: object, where: str) -> None:
    if (
        not isinstance(kid, str)
        or not kid
        or len(kid) > MAX_KID_CHARS
        or not kid.isprintable()
        or any(c in kid for c in ' ,:"')
    ):
        raise KeyConfigError(
            f"{where}: kid must be 1..{MAX_KID_CHARS} printable characters without spaces, quotes, ',' or ':'"
        )
