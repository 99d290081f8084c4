import base64
import hashlib
import hmac
import json
import uuid

import jwt
import pytest

from manas360.errors import InvalidToken, TokenExpired
from manas360.security.jwt import AccessTokenCodec, KeySet

SECRET_1 = "s1-" + "x" * 64
SECRET_2 = "s2-" + "y" * 64
NOW = 1_800_000_000.0
TTL = 900
U1, U2 = "0b7d6a52-6a4e-4d1c-9d59-1f0f5c8f2a11", "9a3c1e2f-0d4b-4c6e-8f7a-2b5d9e0c1a22"
S1, J1 = "5e2f8c1d-3b7a-4f9e-a0c6-d4e1b2a3c433", "c7d9e1f3-2a4b-4c6d-8e0f-a1b3c5d7e944"


def make_codec(keyset: KeySet | None = None, **overrides) -> AccessTokenCodec:
    options = {"issuer": "manas360", "audience": "manas360-api", "ttl_s": TTL}
    options.update(overrides)
    return AccessTokenCodec(keyset=keyset or KeySet(current_kid="k1", keys={"k1": SECRET_1}), **options)


def b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def claims(**overrides) -> dict:
    base = {
        "iss": "manas360",
        "aud": "manas360-api",
        "sub": U1,
        "sid": S1,
        "jti": J1,
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + TTL,
        "auth_time": int(NOW) - 60,
        "amr": ["pwd"],
        "aal": 1,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hand_sign(header: dict, payload: dict, *, digest=hashlib.sha256) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    mac = hmac.new(SECRET_1.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign(payload: dict, *, secret: str = SECRET_1, algorithm: str = "HS256", headers=None) -> str:
    headers = {"kid": "k1", "typ": "at+jwt"} if headers is None else headers
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


def test_round_trip_returns_claims():
    codec = make_codec()
    token, issued = codec.encode(user_id=U1, session_id=S1, now=NOW)
    decoded = codec.decode(token, now=NOW + 1)
    assert decoded == issued
    assert decoded["sub"] == U1 and decoded["sid"] == S1
    assert decoded["iss"] == "manas360" and decoded["aud"] == "manas360-api"
    assert decoded["iat"] == decoded["nbf"] == int(NOW) and decoded["exp"] == int(NOW) + TTL
    assert len(decoded["jti"]) == 36
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "k1", "typ": "at+jwt"}
    assert (decoded["auth_time"], decoded["amr"], decoded["aal"]) == (int(NOW), ["pwd"], 1)


def test_each_token_gets_a_fresh_jti_unless_given():
    codec = make_codec()
    _, first = codec.encode(user_id=U1, session_id=S1)
    _, second = codec.encode(user_id=U1, session_id=S1)
    _, fixed = codec.encode(user_id=U1, session_id=S1, jti="chosen")
    assert first["jti"] != second["jti"] and fixed["jti"] == "chosen"


def test_extra_claims_cannot_override_registered_ones():
    codec = make_codec()
    _, issued = codec.encode(user_id=U1, session_id=S1, extra={"scope": "x"})
    assert issued["scope"] == "x"
    with pytest.raises(ValueError):
        codec.encode(user_id=U1, session_id=S1, extra={"sub": "admin"})


def test_hand_signed_token_verifies():
    assert (
        make_codec().decode(hand_sign({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, claims()), now=NOW)["sub"] == U1
    )


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        ({"alg": "HS256", "kid": "k1"}, {}),  # no typ: not an access token (RFC 9068)
        ({"alg": "HS256", "kid": "k1", "typ": "JWT"}, {}),
        ({"alg": "HS256", "kid": "k1", "typ": "AT+JWT"}, {}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"auth_time": None}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"auth_time": int(NOW) + 1}),  # proved after it was issued
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"auth_time": float(NOW)}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"auth_time": True}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"aal": None}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"aal": 3}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"aal": "2"}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"aal": True}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"amr": None}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"amr": "pwd"}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"amr": []}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"amr": [1]}),
        ({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}, {"amr": ["pwd"] * 9}),
    ],
)
def test_a_token_not_typed_as_an_access_token_or_with_a_bad_assurance_is_invalid(header, payload):
    codec = make_codec()
    with pytest.raises(InvalidToken):
        codec.decode(hand_sign(header, claims(**payload)), now=NOW)
    with pytest.raises(InvalidToken):
        codec.verify(hand_sign(header, claims(**payload)), now=NOW)


def test_verify_hands_out_auth_time_and_aal():
    token, _ = make_codec().encode(
        user_id=U1, session_id=S1, now=NOW, auth_time=int(NOW) - 30, amr=("pwd", "otp", "mfa"), aal=2
    )
    verified = make_codec().verify(token, now=NOW)
    assert (verified.auth_time, verified.aal) == (int(NOW) - 30, 2)


def test_alg_none_token_is_rejected():
    token = b64({"alg": "none", "typ": "JWT", "kid": "k1"}) + "." + b64(claims()) + "."
    with pytest.raises(InvalidToken):
        make_codec().decode(token, now=NOW)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_hmac_algorithm_with_right_secret_is_rejected(algorithm):
    token = sign(claims(), algorithm=algorithm)
    with pytest.raises(InvalidToken):
        make_codec().decode(token, now=NOW)


def test_header_claiming_hs256_over_hs512_signature_is_rejected():
    token = hand_sign({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}, claims(), digest=hashlib.sha512)
    with pytest.raises(InvalidToken):
        make_codec().decode(token, now=NOW)


def test_unknown_kid_is_rejected():
    with pytest.raises(InvalidToken):
        make_codec().decode(sign(claims(), headers={"kid": "k9"}), now=NOW)


def test_missing_kid_is_rejected():
    with pytest.raises(InvalidToken):
        make_codec().decode(sign(claims(), headers={}), now=NOW)


def test_non_string_kid_is_rejected():
    with pytest.raises(InvalidToken):
        make_codec().decode(hand_sign({"alg": "HS256", "kid": ["k1"]}, claims()), now=NOW)


def test_wrong_audience_is_rejected():
    with pytest.raises(InvalidToken):
        make_codec().decode(sign(claims(aud="someone-else")), now=NOW)


def test_audience_list_is_rejected():
    with pytest.raises(InvalidToken):
        make_codec().decode(sign(claims(aud=["manas360-api", "other"])), now=NOW)


def test_wrong_issuer_is_rejected():
    with pytest.raises(InvalidToken):
        make_codec().decode(sign(claims(iss="evil")), now=NOW)


@pytest.mark.parametrize("name", ["iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp"])
def test_missing_required_claim_is_rejected(name):
    with pytest.raises(InvalidToken):
        make_codec().decode(sign(claims(**{name: None})), now=NOW)


@pytest.mark.parametrize("bad", [{"exp": "later"}, {"exp": True}, {"sub": 42}, {"sid": ""}])
def test_badly_typed_claim_is_rejected(bad):
    with pytest.raises(InvalidToken):
        make_codec().decode(sign(claims(**bad)), now=NOW)


NOT_CANONICAL = [
    "0",
    "1' OR '1'='1",
    "u1",
    U1.upper(),
    U1.replace("-", ""),
    "{" + U1 + "}",
    f"urn:uuid:{U1}",
    " " + U1,
    U1 + "\n",
    U1[:-1] + "g",
]


@pytest.mark.parametrize("name", ["sub", "sid", "jti"])
@pytest.mark.parametrize("value", NOT_CANONICAL)
def test_identifier_claims_must_be_canonical_uuids(name, value):
    """Signed with our key is not enough: the ids are looked up in uuid columns and Redis."""
    with pytest.raises(InvalidToken):
        make_codec().decode(sign(claims(**{name: value})), now=NOW)


def test_expired_token_raises_token_expired():
    codec = make_codec()
    token, _ = codec.encode(user_id=U1, session_id=S1, now=NOW)
    with pytest.raises(TokenExpired):
        codec.decode(token, now=NOW + TTL)


def test_not_yet_valid_token_is_invalid():
    token = sign(claims(nbf=int(NOW) + 60))
    with pytest.raises(InvalidToken):
        make_codec().decode(token, now=NOW)


def test_small_clock_skew_on_nbf_is_tolerated():
    token = sign(claims(iat=int(NOW) + 3, nbf=int(NOW) + 3))
    assert make_codec().decode(token, now=NOW)["sub"] == U1


def test_tampered_payload_is_rejected():
    codec = make_codec()
    token, _ = codec.encode(user_id=U1, session_id=S1, now=NOW)
    header, _, signature = token.split(".")
    forged = f"{header}.{b64(claims(sub=U2))}.{signature}"
    with pytest.raises(InvalidToken):
        codec.decode(forged, now=NOW)


def test_token_signed_with_another_key_is_rejected():
    with pytest.raises(InvalidToken):
        make_codec().decode(sign(claims(), secret=SECRET_2), now=NOW)


def test_previous_key_still_verifies_after_rotation():
    old_token, _ = make_codec().encode(user_id=U1, session_id=S1, now=NOW)
    rotated = make_codec(KeySet(current_kid="k2", keys={"k2": SECRET_2, "k1": SECRET_1}))
    new_token, _ = rotated.encode(user_id=U2, session_id=S1, now=NOW)
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert rotated.decode(old_token, now=NOW)["sub"] == U1
    assert rotated.decode(new_token, now=NOW)["sub"] == U2


def test_dropped_key_no_longer_verifies_in_a_new_codec():
    old_token, _ = make_codec().encode(user_id=U1, session_id=S1, now=NOW)
    dropped = make_codec(KeySet(current_kid="k2", keys={"k2": SECRET_2}))
    with pytest.raises(InvalidToken):
        dropped.decode(old_token, now=NOW)


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def test_cache_hit_still_rejects_after_expiry():
    codec = make_codec()
    token, _ = codec.encode(user_id=U1, session_id=S1, now=NOW)
    assert codec.verify(token, now=NOW).user_id == U1
    assert _key(token) in codec._cache
    with pytest.raises(TokenExpired):
        codec.verify(token, now=NOW + TTL + 1)
    assert _key(token) not in codec._cache


def test_cache_hit_is_immutable_and_counted():
    codec = make_codec()
    token, _ = codec.encode(user_id=U1, session_id=S1, now=NOW)
    first = codec.verify(token, now=NOW)
    with pytest.raises(AttributeError):
        first.user_id = "admin"  # type: ignore[misc]
    assert codec.verify(token, now=NOW) == first and first.user_id == U1  # rebuilt from the cached fields
    assert (codec.hits, codec.misses) == (1, 1)


def test_cache_is_bounded_and_keeps_only_verified_tokens():
    codec = make_codec(cache_size=2)
    tokens = [codec.encode(user_id=str(uuid.uuid4()), session_id=S1, now=NOW)[0] for _ in range(3)]
    for token in tokens:
        codec.verify(token, now=NOW)
    assert list(codec._cache) == [_key(token) for token in tokens[1:]]
    with pytest.raises(InvalidToken):
        codec.verify(sign(claims(), secret=SECRET_2), now=NOW)
    assert len(codec._cache) == 2


def test_a_byte_different_token_never_hits_the_cache():
    codec = make_codec()
    token, _ = codec.encode(user_id=U1, session_id=S1, now=NOW)
    codec.verify(token, now=NOW)
    header, payload, signature = token.split(".")
    for tampered in (
        f"{header}.{payload}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        f"{header}.{payload}x.{signature}",
        f" {token}",
    ):
        with pytest.raises(InvalidToken):
            codec.verify(tampered, now=NOW)


def test_verify_and_decode_agree_on_identity_and_times():
    codec = make_codec()
    token, _ = codec.encode(user_id=U1, session_id=S1, now=NOW, extra={"iat_ms": int(NOW * 1000) + 250})
    verified, decoded = codec.verify(token, now=NOW), codec.decode(token, now=NOW)
    assert (verified.user_id, verified.session_id, verified.jti) == (decoded["sub"], decoded["sid"], decoded["jti"])
    assert verified.issued_ms == int(NOW * 1000) + 250 and verified.expires_ms == decoded["exp"] * 1000


def test_cache_entries_are_compact():
    """DEFAULT_TOKEN_CACHE_SIZE (and the README's TOKEN_CACHE_SIZE figure) assume ~610 bytes
    an entry: the digest key, the VerifiedToken and its strings, the LRU's own slot. (The
    token string and its claims dict, cached before, took ~1.8 kB.)"""
    import gc
    import tracemalloc

    from manas360.settings import DEFAULT_TOKEN_CACHE_SIZE

    codec = make_codec(cache_size=DEFAULT_TOKEN_CACHE_SIZE)
    tokens = [codec.encode(user_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()), now=NOW)[0] for _ in range(2000)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for token in tokens:
        codec.verify(token, now=NOW)
    gc.collect()
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    per_entry = grown / len(tokens)
    assert 400 < per_entry < 700, per_entry


def test_cache_entries_are_untracked_by_the_cyclic_gc():
    """A full collection walks every tracked object: a cache of 100,000 tracked entries
    made each one a ~90 ms pause of the worker (the gated GET's p99)."""
    import gc

    codec = make_codec()
    for _ in range(50):
        token, _ = codec.encode(user_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()), now=NOW)
        codec.verify(token, now=NOW)
    gc.collect()
    assert codec.cache_entries == 50
    assert not any(gc.is_tracked(entry) for entry in codec._cache.values())


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "a.b",
        "x" * 5000,
        "x" * 9000,
        "é.é.é",
        "\ud800",
        "a.b.c",
        "...",
        "e30.e30.",
        "\x00.\x00.\x00",
        b64([]) + ".e30.sig",
        b64({"alg": "HS256", "kid": "k1"}) + "." + b64([1]) + ".sig",
    ],
)
def test_garbage_is_invalid_token(garbage):
    with pytest.raises(InvalidToken):
        make_codec().decode(garbage, now=NOW)


def test_keyset_refuses_unknown_current_kid_and_short_secrets():
    with pytest.raises(ValueError):
        KeySet(current_kid="k2", keys={"k1": SECRET_1})
    with pytest.raises(ValueError):
        KeySet(current_kid="k1", keys={"k1": "short"})
    assert SECRET_1 not in repr(KeySet(current_kid="k1", keys={"k1": SECRET_1}))
