"""AES-256-GCM key ring for secrets at rest."""

from __future__ import annotations

import pytest

from manas360.security.secretbox import SecretBox, derive_key
from manas360.services.auth.mfa_enrolment import build_secret_box
from manas360.services.mail.messages import payload_box
from manas360.settings import SettingsError, load_settings
from tests.fixtures.environment import production_environ

OLD, NEW = derive_key(b"o" * 40, purpose=b"test"), derive_key(b"n" * 40, purpose=b"test")


def test_seal_and_open_round_trip_with_a_fresh_nonce_each_time():
    box = SecretBox([NEW])
    first, second = box.seal(b"JBSWY3DPEHPK3PXP", context=b"u1"), box.seal(b"JBSWY3DPEHPK3PXP", context=b"u1")
    assert first != second and b"JBSWY3DPEHPK3PXP" not in first
    opened = box.open(first, context=b"u1")
    assert opened is not None and opened.plaintext == b"JBSWY3DPEHPK3PXP" and not opened.stale_key


def test_another_context_a_tampered_byte_or_an_unknown_key_does_not_open():
    sealed = SecretBox([OLD]).seal(b"secret", context=b"u1")
    assert SecretBox([OLD]).open(sealed, context=b"u2") is None
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert SecretBox([OLD]).open(tampered, context=b"u1") is None
    assert SecretBox([NEW]).open(sealed, context=b"u1") is None
    assert SecretBox([OLD]).open(b"", context=b"u1") is None
    assert SecretBox([OLD]).open(b"\x02" + sealed[1:], context=b"u1") is None


def test_an_older_key_of_the_ring_opens_and_says_so():
    sealed = SecretBox([OLD]).seal(b"secret", context=b"u1")
    opened = SecretBox([NEW, OLD]).open(sealed, context=b"u1")
    assert opened is not None and opened.plaintext == b"secret" and opened.stale_key


def test_derived_keys_depend_on_secret_and_purpose():
    assert derive_key(b"x" * 40, purpose=b"a") != derive_key(b"x" * 40, purpose=b"b")
    assert derive_key(b"x" * 40, purpose=b"a") != derive_key(b"y" * 40, purpose=b"a")
    assert len(derive_key(b"x" * 40, purpose=b"a")) == 32


def test_the_ring_is_the_mfa_key_then_the_jwt_keys():
    jwt, previous, mfa_key = "j" * 40, "p" * 40, "m" * 40
    env = {"JWT_SECRET": jwt, "JWT_PREVIOUS_KEYS": f"k0:{previous}"}
    old = build_secret_box(load_settings({"JWT_SECRET": previous})).seal(b"s", context=b"u")
    derived = build_secret_box(load_settings(env)).seal(b"s", context=b"u")
    ring = build_secret_box(load_settings({**env, "MFA_ENCRYPTION_KEY": mfa_key}))
    for sealed in (old, derived):
        opened = ring.open(sealed, context=b"u")
        assert opened is not None and opened.stale_key
    fresh = ring.open(ring.seal(b"s", context=b"u"), context=b"u")
    assert fresh is not None and not fresh.stale_key


def test_a_short_mfa_key_is_refused_without_quoting_it():
    with pytest.raises(SettingsError) as refused:
        load_settings({"JWT_SECRET": "j" * 40, "MFA_ENCRYPTION_KEY": "short-key-abcdef"})
    assert "MFA_ENCRYPTION_KEY" in str(refused.value) and "short-key-abcdef" not in str(refused.value)
    with pytest.raises(SettingsError, match="MFA_ENCRYPTION_KEY is shorter than 32 bytes"):
        load_settings(production_environ(MFA_ENCRYPTION_KEY="mfa-key-" + "0123456789" * 2))
    assert load_settings(production_environ(MFA_ENCRYPTION_KEY="mfa-key-" + "0123456789abcdef" * 2))


@pytest.mark.parametrize("box_for", [build_secret_box, payload_box], ids=["totp-secrets", "outbox-mails"])
def test_a_rotated_data_key_opens_through_the_previous_keys_and_only_then(box_for):
    base = {"JWT_SECRET": "jwt-secret-" + "0123456789abcdef" * 2}
    old_key, new_key = "old-data-key-" + "0123456789abcdef" * 2, "new-data-key-" + "fedcba9876543210" * 2
    sealed = box_for(load_settings({**base, "MFA_ENCRYPTION_KEY": old_key})).seal(b"s", context=b"u")
    rotated = box_for(
        load_settings({**base, "MFA_ENCRYPTION_KEY": new_key, "MFA_ENCRYPTION_PREVIOUS_KEYS": f"2025:{old_key}"})
    )
    opened = rotated.open(sealed, context=b"u")
    assert opened is not None and opened.plaintext == b"s" and opened.stale_key
    fresh = rotated.open(rotated.seal(b"s", context=b"u"), context=b"u")
    assert fresh is not None and not fresh.stale_key  # the new key seals; previous keys only open
    forgotten = box_for(load_settings({**base, "MFA_ENCRYPTION_KEY": new_key}))
    assert forgotten.open(sealed, context=b"u") is None


@pytest.mark.parametrize(
    ("previous", "message"),
    [
        ("no-key-id", "MFA_ENCRYPTION_PREVIOUS_KEYS must be 'kid:key,...'"),
        (f"a:{'k' * 20}-tail-0123456789,a:{'q' * 20}-tail-0123456789", "repeats key id 'a'"),
        ("a:short-previous-key", "MFA_ENCRYPTION_PREVIOUS_KEYS key for 'a' is shorter than 32 bytes"),
    ],
)
def test_malformed_previous_data_keys_are_refused_without_quoting_them(previous, message):
    with pytest.raises(SettingsError) as refused:
        load_settings({"JWT_SECRET": "j" * 40, "MFA_ENCRYPTION_PREVIOUS_KEYS": previous})
    assert message in str(refused.value) and "short-previous-key" not in str(refused.value)


def test_production_holds_previous_data_keys_to_the_secret_rule():
    with pytest.raises(SettingsError, match="MFA_ENCRYPTION_PREVIOUS_KEYS key for 'old'"):
        load_settings(production_environ(MFA_ENCRYPTION_PREVIOUS_KEYS="old:" + "x" * 40))
    assert load_settings(production_environ(MFA_ENCRYPTION_PREVIOUS_KEYS="old:" + "0123456789abcdef" * 3))
