"""Secrets at rest (TOTP secrets, outbox mails): AES-256-GCM under a small key ring.

Sealed form: `b"\\x01" + key_id (4 bytes) + nonce (12 bytes) + ciphertext+tag`. The key id
is the first 4 bytes of SHA-256 of the key, so a stored secret names the key that sealed it
and the ring can hold older keys. The caller passes a `context` (the user id) as associated
data: a ciphertext copied onto another account's row does not open there.

Keys are never used as given: each configured secret goes through HKDF-SHA256 with a
purpose label, so the JWT signing secret and the key derived from it for this purpose are
unrelated keys. The ring is, current first: MFA_ENCRYPTION_KEY when set, then
MFA_ENCRYPTION_PREVIOUS_KEYS, then the key derived from JWT_SECRET and those derived from
JWT_PREVIOUS_KEYS (`Settings.data_key_secrets`), so rotating either key (the old one moved
to the previous keys) or setting MFA_ENCRYPTION_KEY later does not lose a secret; `open`
tells whether the sealing key was an older one, and the caller seals it again under the
current key.

A secret sealed under a key that is no longer in the ring does not open (`None`): the
caller treats it as no secret at all, never as a crash.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_KEY_ID_BYTES, _NONCE_BYTES = 4, 12
_HEADER = len(_VERSION) + _KEY_ID_BYTES + _NONCE_BYTES


def derive_key(secret: bytes, *, purpose: bytes) -> bytes:
    """A 256-bit key for `purpose` from a configured secret (HKDF-SHA256, no salt: the
    secret already has full entropy; the purpose label separates uses of one secret)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


@dataclass(frozen=True, slots=True)
class Opened:
    plaintext: bytes
    stale_key: bool
    """Sealed under an older key of the ring: seal it again under the current one."""


class SecretBox:
    """Seal with the current key; open with any key of the ring."""

    __slots__ = ("_current", "_ring")

    def __init__(self, keys: Iterable[bytes]) -> None:
        ring: dict[bytes, AESGCM] = {}
        for key in keys:
            ring.setdefault(hashlib.sha256(key).digest()[:_KEY_ID_BYTES], AESGCM(key))
        if not ring:
            raise ValueError("a SecretBox needs at least one key")
        self._ring = ring
        self._current = next(iter(ring))

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)  # random 96-bit nonces: safe far beyond this table's size
        return _VERSION + self._current + nonce + self._ring[self._current].encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, *, context: bytes) -> Opened | None:
        """The plaintext, or None when no key of the ring opens it (unknown key, tampered)."""
        if len(sealed) <= _HEADER or sealed[:1] != _VERSION:
            return None
        key_id = sealed[1 : 1 + _KEY_ID_BYTES]
        aead = self._ring.get(key_id)
        if aead is None:
            return None
        try:
            plaintext = aead.decrypt(sealed[1 + _KEY_ID_BYTES : _HEADER], sealed[_HEADER:], context)
        except InvalidTag:
            return None
        return Opened(plaintext=plaintext, stale_key=key_id != self._current)
