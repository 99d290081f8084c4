"""Access tokens through the HTTP layer: every way a token can be wrong, and which 401."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import orjson
import pytest

from manas360.clock import Clock
from manas360.security.jwt import AccessTokenCodec, KeySet
from manas360.services.auth.tokens import Assurance, mint_access_token
from manas360.settings import load_settings
from tests.fixtures.accounts import API, bearer, register
from tests.fixtures.app import client_for, running_app

ME = f"{API}/me"
OTHER_SECRET = "another-secret-of-enough-length-0123456789"


def _claims(account, **overrides):
    now = int(time.time())
    claims = {
        "iss": "manas360",
        "aud": "manas360-api",
        "sub": account.id,
        "sid": jwt.decode(account.pair["access_token"], options={"verify_signature": False})["sid"],
        "jti": "8b4b0d52-3d7c-4d59-9b1e-4f0c2a3e0c11",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "auth_time": now,
        "amr": ["pwd"],
        "aal": 1,
    }
    claims.update(overrides)
    return claims


def _sign(settings, claims, *, secret=None, kid="k1", algorithm="HS256"):
    key = secret or settings.jwt_secret.get_secret_value()
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid, "typ": "at+jwt"})


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


async def _status(client, headers):
    response = await client.get(ME, headers=headers)
    return response.status_code, response.json().get("error")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc"])
async def test_missing_or_non_bearer_authorization_is_unauthorized(client, header):
    headers = {} if header is None else {"authorization": header}
    assert await _status(client, headers) == (401, "Unauthorized")


@pytest.mark.parametrize("token", [b"garbage", b"a.b.c", b"x" * 7000, "\u00e9t\u00e9.a.b".encode("latin-1")])
async def test_garbled_token_is_invalid(client, token):
    assert await _status(client, {"authorization": b"Bearer " + token}) == (401, "InvalidToken")


async def test_a_token_made_with_our_key_and_valid_claims_is_accepted(client, settings):
    account = await register(client)
    token = _sign(settings, _claims(account))
    assert await _status(client, bearer(token)) == (200, None)


@pytest.mark.parametrize("claim", ["sub", "sid", "jti"])
@pytest.mark.parametrize("value", ["0", "1' OR '1'='1", "8B4B0D52-3D7C-4D59-9B1E-4F0C2A3E0C11"])
async def test_signed_token_with_a_non_uuid_identifier_is_invalid_not_a_500(client, settings, claim, value):
    """Our own signature over a malformed id (a script, an old issuer, a leaked key) is a 401."""
    account = await register(client)
    token = _sign(settings, _claims(account, **{claim: value}))
    assert await _status(client, bearer(token)) == (401, "InvalidToken")


async def test_alg_none_is_invalid(client, settings):
    account = await register(client)
    token = f"{_b64({'alg': 'none', 'kid': 'k1', 'typ': 'JWT'})}.{_b64(_claims(account))}."
    assert await _status(client, bearer(token)) == (401, "InvalidToken")


async def test_other_algorithm_is_invalid(client, settings):
    account = await register(client)
    token = _sign(settings, _claims(account), algorithm="HS512")
    assert await _status(client, bearer(token)) == (401, "InvalidToken")


@pytest.mark.parametrize("kid", ["k9", "", None])
async def test_unknown_or_missing_kid_is_invalid(client, settings, kid):
    account = await register(client)
    claims = _claims(account)
    headers = {} if kid is None else {"kid": kid}
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256", headers=headers)
    assert await _status(client, bearer(token)) == (401, "InvalidToken")


@pytest.mark.parametrize("override", [{"aud": "someone-else"}, {"iss": "evil"}, {"aud": ["manas360-api", "x"]}])
async def test_wrong_audience_or_issuer_is_invalid(client, settings, override):
    account = await register(client)
    assert await _status(client, bearer(_sign(settings, _claims(account, **override)))) == (401, "InvalidToken")


async def test_expired_token_is_token_expired(client, settings):
    account = await register(client)
    past = int(time.time()) - 1000
    token = _sign(settings, _claims(account, iat=past, nbf=past, exp=past + 900, auth_time=past))
    assert await _status(client, bearer(token)) == (401, "TokenExpired")


async def test_not_yet_valid_token_is_invalid(client, settings):
    account = await register(client)
    future = int(time.time()) + 600
    token = _sign(settings, _claims(account, nbf=future))
    assert await _status(client, bearer(token)) == (401, "InvalidToken")


async def test_tampered_payload_is_invalid(client, settings):
    account = await register(client)
    victim = await register(client)
    header, _, signature = account.pair["access_token"].split(".")
    forged = _b64({**jwt.decode(account.pair["access_token"], options={"verify_signature": False}), "sub": victim.id})
    assert await _status(client, bearer(f"{header}.{forged}.{signature}")) == (401, "InvalidToken")


async def test_token_signed_with_another_key_is_invalid(client, settings):
    account = await register(client)
    assert await _status(client, bearer(_sign(settings, _claims(account), secret=OTHER_SECRET))) == (
        401,
        "InvalidToken",
    )


async def test_missing_registered_claim_is_invalid(client, settings):
    account = await register(client)
    claims = _claims(account)
    del claims["sid"]
    assert await _status(client, bearer(_sign(settings, claims))) == (401, "InvalidToken")


async def test_rotated_key_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_kid(client, environ, settings):
    account = await register(client)
    old_token = account.pair["access_token"]
    rotated = load_settings(
        {
            **environ,
            "JWT_KEY_ID": "k2",
            "JWT_SECRET": OTHER_SECRET,
            "JWT_PREVIOUS_KEYS": f"k1:{settings.jwt_secret.get_secret_value()}",
        }
    )
    async with running_app(rotated) as rotated_app, client_for(rotated_app) as rotated_client:
        assert await _status(rotated_client, bearer(old_token)) == (200, None)
        pair = (
            await rotated_client.post(f"{API}/auth/login", json={"email": account.email, "password": account.password})
        ).json()
        assert jwt.get_unverified_header(pair["access_token"])["kid"] == "k2"
        assert await _status(rotated_client, bearer(pair["access_token"])) == (200, None)
        refreshed = await rotated_client.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200
    # The app that never learnt k2 refuses it.
    assert await _status(client, bearer(pair["access_token"])) == (401, "InvalidToken")


def test_access_tokens_carry_identity_and_millisecond_issue_time_only(settings):
    codec = AccessTokenCodec(
        keyset=KeySet(current_kid="k1", keys={"k1": settings.jwt_secret.get_secret_value()}),
        issuer="manas360",
        audience="manas360-api",
        ttl_s=900,
    )
    proved = datetime.now(UTC) - timedelta(seconds=30)
    token = mint_access_token(
        codec=codec,
        clock=Clock(),
        user_id=str(uuid.uuid4()),
        session_id=str(uuid.uuid4()),
        assurance=Assurance(auth_time=proved, amr=("pwd", "otp", "mfa"), aal=2),
    )
    claims = codec.decode(token)
    assert set(claims) == {"iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "iat_ms", "auth_time", "amr", "aal"}
    assert claims["iat"] * 1000 <= claims["iat_ms"] < claims["iat"] * 1000 + 1000
    assert (claims["auth_time"], claims["amr"], claims["aal"]) == (int(proved.timestamp()), ["pwd", "otp", "mfa"], 2)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "k1", "typ": "at+jwt"}
