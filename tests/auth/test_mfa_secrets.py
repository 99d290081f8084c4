"""What MFA keeps and tells: secrets sealed at rest, a key change that is survivable, no
secret, code or token in any log line, a metric for every refused code, the `auth` limit."""

from __future__ import annotations

import base64
import secrets
from uuid import uuid4

import pytest
from loguru import logger
from prometheus_client import REGISTRY

from manas360.settings import load_settings
from tests.auth.mfa_helpers import (
    CONFIRM,
    LOGIN,
    SETUP,
    TOTP,
    VERIFY,
    code_at,
    enable,
    mfa_token,
    verify,
    wrong_code,
)
from tests.fixtures.accounts import register
from tests.fixtures.app import client_for, running_app


def _failures(reason: str) -> float:
    return REGISTRY.get_sample_value("manas360_mfa_failures_total", {"reason": reason}) or 0.0


async def _sealed(pg, user_id: str) -> bytes:
    return bytes(await pg.fetchval("SELECT secret_sealed FROM mfa_totp WHERE user_id = $1", user_id))


async def test_the_secret_is_stored_sealed_not_in_base32(client, pg, account):
    enabled = await enable(client, account)
    sealed = await _sealed(pg, account.id)
    raw = base64.b32decode(enabled.secret)
    assert enabled.secret.encode() not in sealed and enabled.secret.lower().encode() not in sealed
    assert raw not in sealed
    assert len(sealed) >= 1 + 4 + 12 + len(enabled.secret) + 16  # version, key id, nonce, ciphertext, tag


async def test_a_sealed_secret_copied_to_another_account_does_not_open_there(client, pg):
    alice, mallory = await register(client), await register(client)
    alice_mfa, mallory_mfa = await enable(client, alice), await enable(client, mallory)
    await pg.execute(
        "UPDATE mfa_totp SET secret_sealed = (SELECT secret_sealed FROM mfa_totp WHERE user_id = $1) "
        "WHERE user_id = $2",
        alice.id,
        mallory.id,
    )
    response = await verify(client, await mfa_token(client, mallory), alice_mfa.code())
    assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")
    assert mallory_mfa.recovery_codes  # mallory still has her own way in


async def test_rotating_keys_keeps_secrets_and_reseals_them_under_the_new_key(environ, database, pg, client, account):
    """MFA_ENCRYPTION_KEY set later: the key derived from JWT_SECRET still opens the old
    secret, and the next accepted code seals it again under the new key."""
    enabled = await enable(client, account)
    before = await _sealed(pg, account.id)
    rotated = load_settings({**environ, "MFA_ENCRYPTION_KEY": secrets.token_urlsafe(32)})
    async with running_app(rotated) as app, client_for(app) as other:
        response = await verify(other, await mfa_token(other, account), enabled.code())
        assert response.status_code == 200, response.text
    after = await _sealed(pg, account.id)
    assert after != before and after[1:5] != before[1:5]  # another key id
    # Sealed under the new key only now: dropping MFA_ENCRYPTION_KEY again would lose it.
    assert (await verify(client, await mfa_token(client, account), enabled.code())).status_code == 401


async def test_a_secret_no_configured_key_opens_refuses_totp_but_not_recovery_codes(environ, database, account, client):
    """The documented behaviour of losing the key: TOTP codes are wrong (401, counted, a
    warning and the `undecryptable` metric), recovery codes still sign in, never a 500."""
    enabled = await enable(client, account)
    other_keys = load_settings(
        {**environ, "JWT_SECRET": secrets.token_urlsafe(48), "MFA_ENCRYPTION_KEY": secrets.token_urlsafe(32)}
    )
    warnings: list[str] = []
    before = _failures("undecryptable")
    async with running_app(other_keys) as app, client_for(app) as other:
        # Added once the app has configured logging (its start replaces every sink).
        sink = logger.add(lambda message: warnings.append(message.record["message"]), level="WARNING")
        try:
            token = await mfa_token(other, account)
            response = await verify(other, token, enabled.code())
            assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")
            recovered = await verify(other, token, enabled.recovery_codes[0])
            assert recovered.status_code == 200, recovered.text
            off = await other.request(
                "DELETE",
                TOTP,
                json={"code": enabled.recovery_codes[1]},
                headers={"authorization": f"Bearer {recovered.json()['access_token']}"},
            )
            assert off.status_code == 204
        finally:
            logger.remove(sink)
    assert _failures("undecryptable") == before + 1
    assert any("opens with no configured key" in line and account.id in line for line in warnings)


async def test_no_secret_code_or_token_reaches_the_logs(client, account):
    lines: list[str] = []
    sink = logger.add(
        lambda message: lines.append(f"{message.record['message']} {message.record['extra']}"), level="TRACE"
    )
    try:
        setup = (await client.post(SETUP, headers=account.headers)).json()
        confirm_code = code_at(setup["secret"], -1)
        codes = (await client.post(CONFIRM, headers=account.headers, json={"code": confirm_code})).json()
        token = await mfa_token(client, account)
        wrong = wrong_code(setup["secret"])
        await verify(client, token, wrong)
        right = code_at(setup["secret"], 0)
        pair = (await verify(client, token, right)).json()
        await client.post(VERIFY, json={"mfa_token": "not-a-token", "code": "000000"})
        await client.request(
            "DELETE",
            TOTP,
            json={"code": codes["recovery_codes"][0]},
            headers={"authorization": f"Bearer {pair['access_token']}"},
        )
    finally:
        logger.remove(sink)
    text = "\n".join(lines)
    sensitive = [
        setup["secret"],
        confirm_code,
        token,
        wrong,
        right,
        pair["access_token"],
        pair["refresh_token"],
        *codes["recovery_codes"],
    ]
    assert not [value for value in sensitive if value in text]


async def test_refused_codes_are_counted_by_reason(client, account):
    enabled = await enable(client, account)
    wrong, replay, bad_token = _failures("wrong_code"), _failures("replay"), _failures("bad_token")
    token = await mfa_token(client, account)
    assert (await verify(client, token, wrong_code(enabled.secret))).status_code == 401
    code = enabled.code()
    assert (await verify(client, token, code)).status_code == 200
    assert (await verify(client, await mfa_token(client, account), code)).status_code == 401
    assert (await verify(client, "nonsense", code)).status_code == 401
    assert (_failures("wrong_code"), _failures("replay"), _failures("bad_token")) == (
        wrong + 1,
        replay + 1,
        bad_token + 1,
    )


@pytest.fixture(scope="module")
async def limited_app(environ, database, redis_raw):
    settings = load_settings(
        {**environ, "REDIS_PREFIX": f"{environ['REDIS_PREFIX']}mfa-{uuid4().hex[:8]}:", "RATE_LIMIT_AUTH": "2/900"}
    )
    async with running_app(settings) as app:
        yield app


async def test_verify_is_under_the_auth_policy_with_its_own_budget(limited_app):
    async with client_for(limited_app, client_ip="203.0.113.77") as client:
        for remaining in (1, 0):
            response = await client.post(VERIFY, json={"mfa_token": "nonsense", "code": "123456"})
            assert response.status_code == 401
            assert response.headers["ratelimit-policy"].endswith('"auth";q=2;w=900')
            assert f'"auth";r={remaining}' in response.headers["ratelimit"]
        limited = await client.post(VERIFY, json={"mfa_token": "nonsense", "code": "123456"})
        assert limited.status_code == 429
        login = await client.post(LOGIN, json={"email": "nobody@example.com", "password": "whatever it is"})
        assert login.status_code == 401  # the login budget is untouched
