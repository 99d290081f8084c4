"""Asymmetric access tokens (EdDSA, ES256): keys, the published set, and every way a token
might choose its own verification."""

from __future__ import annotations

import base64
import json
import secrets
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from manas360.errors import InvalidToken
from manas360.security.jwt import AccessTokenCodec, KeySet
from manas360.security.signing import KeyConfigError, generate_private_key, load_private_key, parse_private_keys
from manas360.settings import SettingsError, load_settings
from tests.fixtures.environment import production_environ

USER, SESSION = "5f0c6f4e-2b7a-4a53-9a51-9f8e0f2a1c3d", "6f0c6f4e-2b7a-4a53-9a51-9f8e0f2a1c3d"


def _key(algorithm: str, kid: str):
    element = generate_private_key(algorithm, kid)
    return load_private_key(element["kid"], element["pem"])


def _codec(*keys) -> AccessTokenCodec:
    return AccessTokenCodec(keyset=KeySet(list(keys)), issuer="manas360", audience="manas360-api", ttl_s=900)


def _claims(now: float | None = None) -> dict:
    issued = int(now or time.time())
    return {
        "iss": "manas360",
        "aud": "manas360-api",
        "sub": USER,
        "sid": SESSION,
        "jti": "7f0c6f4e-2b7a-4a53-9a51-9f8e0f2a1c3d",
        "iat": issued,
        "nbf": issued,
        "exp": issued + 900,
        "auth_time": issued,
        "amr": ["pwd"],
        "aal": 1,
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict, claims: dict) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_a_token_verifies_with_the_key_its_kid_names_and_the_set_publishes_only_public_halves(algorithm):
    key = _key(algorithm, "k-new")
    codec = _codec(key)
    token, _ = codec.encode(user_id=USER, session_id=SESSION)
    assert jwt.get_unverified_header(token) == {"alg": algorithm, "kid": "k-new", "typ": "at+jwt"}
    assert codec.verify(token).user_id == USER
    (published,) = codec.keyset.public_jwks()["keys"]
    assert published["kid"] == "k-new" and published["alg"] == algorithm and published["use"] == "sig"
    assert "d" not in published  # the private scalar never leaves
    verifier_key = jwt.PyJWK(published).key
    assert jwt.decode(token, verifier_key, algorithms=[algorithm], audience="manas360-api")["sub"] == USER


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_every_way_a_token_could_choose_its_own_verification_is_refused(algorithm):
    key = _key(algorithm, "k1")
    other = _key(algorithm, "k1")  # the same kid, another key: a forger's
    other_type = _key("ES256" if algorithm == "EdDSA" else "EdDSA", "k2")
    codec = _codec(key)
    public_pem = key.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = _claims()
    header = {"kid": "k1", "typ": "at+jwt"}
    attacks = {
        # HS256 "signed" with the public key, which every verifier can read from the JWKS.
        "alg confusion": _hs256_with(public_pem, claims, header),
        "alg none": _unsigned({**header, "alg": "none"}, claims),
        "forged with the same kid": jwt.encode(claims, other.private, algorithm=algorithm, headers=header),
        "unknown kid": jwt.encode(claims, other.private, algorithm=algorithm, headers={**header, "kid": "k9"}),
        "no kid": jwt.encode(claims, key.private, algorithm=algorithm, headers={"typ": "at+jwt"}),
        "other algorithm, our kid": jwt.encode(claims, other_type.private, algorithm=other_type.alg, headers=header),
        "not an access token": jwt.encode(claims, key.private, algorithm=algorithm, headers={"kid": "k1"}),
    }
    # Headers that point a verifier elsewhere for its key, or demand extensions: refused even
    # when the signature is ours.
    for name, value in (
        ("jku", "https://evil.example/jwks.json"),
        ("x5u", "https://evil.example/cert"),
        ("jwk", other.public_jwk()),
        ("x5c", ["MIIB"]),
        ("crit", ["exp"]),
    ):
        attacks[f"{name} header"] = jwt.encode(
            claims, key.private, algorithm=algorithm, headers={**header, name: value}
        )
    for name, token in attacks.items():
        with pytest.raises(InvalidToken):
            codec.verify(token)
            pytest.fail(f"{name}: accepted")
    assert codec.verify(jwt.encode(claims, key.private, algorithm=algorithm, headers=header)).user_id == USER


def _hs256_with(secret: bytes, claims: dict, header: dict) -> str:
    import hashlib
    import hmac

    signing_input = f"{_b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def test_an_hs256_codec_publishes_nothing_and_refuses_asymmetric_tokens():
    from manas360.security.jwt import KeySet as Set

    hs = AccessTokenCodec(
        keyset=Set.hmac(current_kid="k1", keys={"k1": "s" * 40}), issuer="manas360", audience="manas360-api", ttl_s=900
    )
    assert hs.keyset.public_jwks() == {"keys": []}
    key = _key("EdDSA", "k1")
    with pytest.raises(InvalidToken):
        hs.verify(jwt.encode(_claims(), key.private, algorithm="EdDSA", headers={"kid": "k1", "typ": "at+jwt"}))


def test_rotation_the_new_key_published_first_then_signing_then_the_old_one_dropped():
    old, new = _key("EdDSA", "old"), _key("EdDSA", "new")
    before, published, switched, dropped = _codec(old), _codec(old, new), _codec(new, old), _codec(new)
    old_token, _ = before.encode(user_id=USER, session_id=SESSION)
    new_token, _ = switched.encode(user_id=USER, session_id=SESSION)
    assert [k["kid"] for k in published.keyset.public_jwks()["keys"]] == ["old", "new"]
    for codec in (published, switched):  # both tokens verify on every instance while the two coexist
        assert codec.verify(old_token) and codec.verify(new_token)
    assert (
        published.encode(user_id=USER, session_id=SESSION)[0]
        and jwt.get_unverified_header(published.encode(user_id=USER, session_id=SESSION)[0])["kid"] == "old"
    )
    with pytest.raises(InvalidToken):
        dropped.verify(old_token)


def _pem(private) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _keys(*elements) -> str:
    return json.dumps(list(elements))


EDDSA_A, EDDSA_B = generate_private_key("EdDSA", "a"), generate_private_key("EdDSA", "b")
WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()
ES256_A = generate_private_key("ES256", "e")


@pytest.mark.parametrize(
    ("environ", "refusal"),
    [
        ({"JWT_ALGORITHM": "EdDSA"}, "needs JWT_PRIVATE_KEYS"),
        ({"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEYS": "not json"}, "JSON array"),
        ({"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEYS": "[]"}, "non-empty"),
        ({"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEYS": _keys({"kid": "a"})}, "exactly the keys kid and pem"),
        ({"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEYS": _keys(EDDSA_A, {**EDDSA_B, "kid": "a"})}, "repeats key id 'a'"),
        (
            {
                "JWT_ALGORITHM": "EdDSA",
                "JWT_PRIVATE_KEYS": _keys({"kid": "a", "pem": "-----BEGIN PRIVATE KEY-----\nxx"}),
            },
            "not an unencrypted PKCS#8",
        ),
        ({"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEYS": _keys(EDDSA_A, ES256_A)}, "key 'e' is an ES256 key, not EdDSA"),
        ({"JWT_ALGORITHM": "ES256", "JWT_PRIVATE_KEYS": _keys(EDDSA_A)}, "key 'a' is an EdDSA key, not ES256"),
        (
            {
                "JWT_ALGORITHM": "ES256",
                "JWT_PRIVATE_KEYS": _keys({"kid": "p384", "pem": _pem(ec.generate_private_key(ec.SECP384R1()))}),
            },
            "neither Ed25519",
        ),
        (
            {
                "JWT_ALGORITHM": "ES256",
                "JWT_PRIVATE_KEYS": _keys(
                    {"kid": "rsa", "pem": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))}
                ),
            },
            "neither",
        ),
        ({"JWT_PRIVATE_KEYS": _keys(EDDSA_A)}, "JWT_ALGORITHM is HS256"),
        ({"JWT_ALGORITHM": "RS256"}, "JWT_ALGORITHM"),
        ({"INTROSPECTION_KEYS": "svc:short"}, "shorter than 32 bytes"),
        ({"INTROSPECTION_KEYS": "svc"}, "'name:key,...'"),
        ({"INTROSPECTION_KEYS": f"svc:{'k' * 40},svc:{'j' * 40}"}, "repeats the name 'svc'"),
        ({"WEBHOOK_SECRET": WHSEC}, "WEBHOOK_SECRET is set but WEBHOOK_URL is not"),
        ({"WEBHOOK_URL": "https://hooks.example.com/in"}, "needs WEBHOOK_SECRET"),
        ({"WEBHOOK_URL": "ftp://hooks.example.com/in", "WEBHOOK_SECRET": WHSEC}, "http(s) URL"),
        ({"WEBHOOK_URL": "https://hooks.example.com/in", "WEBHOOK_SECRET": "k" * 40}, "secret 1 must be `whsec_`"),
        (
            {"WEBHOOK_URL": "https://hooks.example.com/in", "WEBHOOK_SECRET": f"{WHSEC} whsec_c2hvcnQ="},
            "secret 2 must be `whsec_`",
        ),
    ],
)
def test_key_settings_are_refused_in_one_line_that_never_quotes_a_key(environ, refusal):
    with pytest.raises(SettingsError) as refused:
        load_settings(environ)
    message = str(refused.value)
    assert refusal in message and "\n" not in message
    assert "BEGIN" not in message and "k" * 40 not in message and "short" not in message.replace("shorter", "")


def test_production_with_key_pairs_needs_no_jwt_secret_but_refuses_weak_service_keys():
    keys = _keys(EDDSA_A, EDDSA_B)
    settings = load_settings(production_environ(JWT_ALGORITHM="EdDSA", JWT_PRIVATE_KEYS=keys, JWT_SECRET=""))
    assert [key.kid for key in settings.signing_keys] == ["a", "b"]
    with pytest.raises(SettingsError, match="INTROSPECTION_KEYS key for 'svc' is one repeated character"):
        load_settings(production_environ(INTROSPECTION_KEYS=f"svc:{'x' * 40}"))
    with pytest.raises(SettingsError, match="JWT_SECRET must be set"):
        load_settings(production_environ(JWT_SECRET=""))
    short = "whsec_" + base64.b64encode(b"0123456789abcdefghij").decode()
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET secret 1 is shorter than 32 bytes"):
        load_settings(production_environ(WEBHOOK_URL="https://hooks.example.com/in", WEBHOOK_SECRET=short))
    with pytest.raises(SettingsError, match="WEBHOOK_URL must be an https:// URL in production"):
        load_settings(production_environ(WEBHOOK_URL="http://hooks.example.com/in", WEBHOOK_SECRET=WHSEC))
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET secret 1 is one repeated character"):
        load_settings(production_environ(WEBHOOK_URL="https://hooks.example.com/in", WEBHOOK_SECRET=WHSEC))
    good = secrets.token_bytes(32)
    assert load_settings(
        production_environ(
            WEBHOOK_URL="https://hooks.example.com/in", WEBHOOK_SECRET="whsec_" + base64.b64encode(good).decode()
        )
    ).webhook_secrets == (good,)


def test_parse_private_keys_keeps_the_order_the_first_signs():
    keys = parse_private_keys(_keys(EDDSA_B, EDDSA_A))
    assert [key.kid for key in keys] == ["b", "a"] and "PRIVATE" not in repr(keys)
    with pytest.raises(KeyConfigError):
        generate_private_key("HS256")


def test_keys_generate_prints_one_element_that_the_settings_accept(tmp_path):
    import subprocess
    import sys

    from tests.fixtures.server import ROOT

    for algorithm in ("EdDSA", "ES256"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "manas360.cli",
                "keys",
                "generate",
                "--algorithm",
                algorithm,
                "--kid",
                f"{algorithm}-1",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin"},
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        element = json.loads(done.stdout)
        settings = load_settings({"JWT_ALGORITHM": algorithm, "JWT_PRIVATE_KEYS": json.dumps([element])})
        assert settings.signing_keys[0].kid == f"{algorithm}-1" and settings.signing_keys[0].alg == algorithm
    refused = subprocess.run(
        [sys.executable, "-m", "manas360.cli", "keys", "generate", "--algorithm", "RS256"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
