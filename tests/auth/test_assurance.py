"""What each way in proves, as the access token says it (`auth_time`, `amr`, `aal`, `typ`),
and what a refresh does with it: keeps it, never raises it, lets `aal` 2 decay after
AAL2_MAX_AGE_S, and ends the session SESSION_MAX_AGE_S after its login."""

from __future__ import annotations

import time

import jwt

from tests.auth.mfa_helpers import enable, mfa_token, verify
from tests.fixtures.accounts import API, PASSWORD, login, register

REFRESH = f"{API}/auth/refresh"


def _claims(pair: dict) -> dict:
    return jwt.decode(pair["access_token"], options={"verify_signature": False})


def _assurance(pair: dict) -> tuple[list[str], int]:
    claims = _claims(pair)
    return claims["amr"], claims["aal"]


async def test_each_way_in_carries_its_exact_amr_and_aal(client):
    """register and login: a password; the MFA step with a TOTP or a recovery code: two factors."""
    account = await register(client)
    assert _assurance(account.pair) == (["pwd"], 1)
    assert jwt.get_unverified_header(account.pair["access_token"])["typ"] == "at+jwt"
    assert _assurance((await login(client, account)).pair) == (["pwd"], 1)
    enabled = await enable(client, account)
    by_totp = await verify(client, await mfa_token(client, account), enabled.code())
    assert _assurance(by_totp.json()) == (["pwd", "otp", "mfa"], 2)
    by_recovery = await verify(client, await mfa_token(client, account), enabled.recovery_codes[0])
    assert _assurance(by_recovery.json()) == (["pwd", "otp", "mfa"], 2)
    claims = _claims(by_totp.json())
    assert claims["auth_time"] <= claims["iat"] and abs(claims["auth_time"] - time.time()) < 30


async def test_a_refresh_keeps_the_assurance_and_never_raises_it(client):
    account = await register(client)
    enabled = await enable(client, account)
    pair = (await verify(client, await mfa_token(client, account), enabled.code())).json()
    refreshed = (await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})).json()
    assert _assurance(refreshed) == (["pwd", "otp", "mfa"], 2)
    assert _claims(refreshed)["auth_time"] == _claims(pair)["auth_time"]
    plain = await register(client)
    refreshed_plain = (await client.post(REFRESH, json={"refresh_token": plain.refresh_token})).json()
    assert _assurance(refreshed_plain) == (["pwd"], 1)


async def test_aal_2_decays_to_1_on_refresh_after_aal2_max_age(client, pg):
    account = await register(client)
    enabled = await enable(client, account)
    pair = (await verify(client, await mfa_token(client, account), enabled.code())).json()
    await pg.execute(
        "UPDATE sessions SET auth_time = auth_time - interval '12 hours 1 second' WHERE id = $1", _claims(pair)["sid"]
    )
    refreshed = (await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})).json()
    assert _assurance(refreshed) == (["pwd", "otp", "mfa"], 1)


async def test_a_session_ends_session_max_age_after_its_login_whatever_the_refreshes(client, pg):
    account = await register(client)
    pair = (await client.post(REFRESH, json={"refresh_token": account.refresh_token})).json()
    await pg.execute(
        "UPDATE sessions SET created_at = created_at - interval '30 days' WHERE id = $1", _claims(pair)["sid"]
    )
    ended = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert (ended.status_code, ended.json()["error"]) == (401, "InvalidToken")


async def test_a_refresh_token_never_outlives_its_session(client, pg):
    account = await register(client)
    sid = _claims(account.pair)["sid"]
    await pg.execute("UPDATE sessions SET created_at = created_at - interval '29 days 23 hours' WHERE id = $1", sid)
    refreshed = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert refreshed.status_code == 200
    left = await pg.fetchval(
        "SELECT EXTRACT(EPOCH FROM expires_at - now()) FROM tokens WHERE session_id = $1 "
        "AND rotated_at IS NULL AND revoked_at IS NULL",
        sid,
    )
    assert left <= 3600 + 5  # the session's end, not 7 days


async def test_a_password_change_with_a_code_opens_an_aal_2_session(client):
    account = await register(client)
    enabled = await enable(client, account)
    changed = await client.post(
        f"{API}/auth/password",
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": "a different passphrase", "code": enabled.code()},
    )
    assert changed.status_code == 200, changed.text
    assert _assurance(changed.json()) == (["pwd", "otp", "mfa"], 2)
