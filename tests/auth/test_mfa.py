"""TOTP MFA through the API: setup, confirm, the login's second step, replay refusal,
recovery codes, mfa_token rules, turning it off."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pyotp

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
from tests.fixtures.accounts import API, PASSWORD, bearer, register

ME = f"{API}/me"


async def _me(client, headers) -> dict:
    response = await client.get(ME, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _audit(pg, user_id: str) -> list[str]:
    rows = await pg.fetch(
        "SELECT action FROM audit_logs WHERE target_user_id = $1 AND action LIKE '%mfa%' ORDER BY id", user_id
    )
    return [row["action"] for row in rows]


# -- setup and confirm ------------------------------------------------------------------------


async def test_setup_returns_a_pending_secret_and_its_otpauth_uri(client, pg, account):
    response = await client.post(SETUP, headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert body["qr_svg"].startswith("<svg") and body["qr_svg"].rstrip().endswith("</svg>")
    uri = urlsplit(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert parse_qs(uri.query)["secret"] == [body["secret"]] and parse_qs(uri.query)["issuer"] == ["MANAS360"]
    assert account.email in uri.path.replace("%40", "@")
    assert len(body["secret"]) >= 32
    assert (await _me(client, account.headers))["mfa_enabled"] is False
    login = await client.post(LOGIN, json={"email": account.email, "password": PASSWORD})
    assert login.status_code == 200  # pending: the password alone still signs in
    assert await pg.fetchval("SELECT confirmed_at FROM mfa_totp WHERE user_id = $1", account.id) is None


async def test_setup_again_replaces_the_pending_secret(client, account):
    first = (await client.post(SETUP, headers=account.headers)).json()["secret"]
    second = (await client.post(SETUP, headers=account.headers)).json()["secret"]
    assert first != second
    stale = await client.post(CONFIRM, headers=account.headers, json={"code": code_at(first, 0)})
    assert (stale.status_code, stale.json()["error"]) == (401, "InvalidCredentials")
    assert (await client.post(CONFIRM, headers=account.headers, json={"code": code_at(second, 0)})).status_code == 200


async def test_a_wrong_code_does_not_confirm(client, pg, account):
    secret = (await client.post(SETUP, headers=account.headers)).json()["secret"]
    response = await client.post(CONFIRM, headers=account.headers, json={"code": wrong_code(secret)})
    assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")
    assert (await _me(client, account.headers))["mfa_enabled"] is False
    assert await _audit(pg, account.id) == ["auth.mfa_setup", "auth.mfa_confirm_failed"]


async def test_confirm_without_setup_is_401(client, account):
    response = await client.post(CONFIRM, headers=account.headers, json={"code": "123456"})
    assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")


async def test_confirm_turns_mfa_on_with_ten_distinct_recovery_codes(client, pg, account):
    enabled = await enable(client, account)
    assert len(enabled.recovery_codes) == 10 == len(set(enabled.recovery_codes))
    assert (await _me(client, account.headers))["mfa_enabled"] is True
    again = await client.post(SETUP, headers=account.headers)
    assert (again.status_code, again.json()["error"]) == (409, "MfaAlreadyEnabled")
    confirm = await client.post(CONFIRM, headers=account.headers, json={"code": enabled.code()})
    assert (confirm.status_code, confirm.json()["error"]) == (409, "MfaAlreadyEnabled")
    hashes = await pg.fetch("SELECT code_hash FROM mfa_recovery_codes WHERE user_id = $1", account.id)
    assert len(hashes) == 10
    stored = b"".join(bytes(row["code_hash"]) for row in hashes)
    assert not any(code.replace("-", "").encode() in stored for code in enabled.recovery_codes)
    assert await _audit(pg, account.id) == ["auth.mfa_setup", "auth.mfa_enabled"]


async def test_the_code_that_confirmed_cannot_sign_in(client, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    replay = await verify(client, token, code_at(enabled.secret, -1))
    assert (replay.status_code, replay.json()["error"]) == (401, "InvalidCredentials")


async def test_setup_needs_a_bearer_token(client):
    assert (await client.post(SETUP)).status_code == 401
    assert (await client.post(CONFIRM, json={"code": "123456"})).status_code == 401


async def test_bodies_refuse_unknown_fields_and_empty_codes(client, account):
    for url, body in (
        (CONFIRM, {"code": "123456", "role": "admin"}),
        (CONFIRM, {"code": ""}),
        (VERIFY, {"mfa_token": "x", "code": "1", "extra": 1}),
        (VERIFY, {"code": "123456"}),
    ):
        response = await client.post(url, headers=account.headers, json=body)
        assert (response.status_code, response.json()["error"]) == (422, "ValidationError"), (url, body)


# -- the login's second step ------------------------------------------------------------------


async def test_login_with_mfa_on_answers_mfa_required_with_a_token_and_no_pair(client, pg, account):
    await enable(client, account)
    response = await client.post(LOGIN, json={"email": account.email, "password": PASSWORD})
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "MfaRequired" and len(body["mfa_token"]) >= 43
    assert "access_token" not in body and "refresh_token" not in body
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id) == 1
    stored = await pg.fetchval("SELECT token_hash FROM mfa_tokens WHERE user_id = $1", account.id)
    assert body["mfa_token"].encode() not in bytes(stored)
    ttl = await pg.fetchval(
        "SELECT EXTRACT(EPOCH FROM expires_at - created_at) FROM mfa_tokens WHERE user_id = $1", account.id
    )
    assert 299 <= ttl <= 300
    wrong = await client.post(LOGIN, json={"email": account.email, "password": "definitely wrong"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "InvalidCredentials")


async def test_verify_with_a_current_code_completes_the_login(client, pg, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    response = await verify(client, token, enabled.code())
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "Bearer" and pair["user"]["mfa_enabled"] is True
    assert (await _me(client, bearer(pair["access_token"])))["id"] == account.id
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id) == 2
    assert (await _audit(pg, account.id))[-2:] == ["auth.mfa_challenged", "auth.mfa_verified"]
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200


async def test_a_code_is_accepted_once(client, account):
    enabled = await enable(client, account)
    code = enabled.code()
    assert (await verify(client, await mfa_token(client, account), code)).status_code == 200
    replay = await verify(client, await mfa_token(client, account), code)
    assert (replay.status_code, replay.json()["error"]) == (401, "InvalidCredentials")
    assert (await verify(client, await mfa_token(client, account), enabled.code())).status_code == 200


async def test_an_earlier_step_after_a_later_one_is_refused(client, account):
    enabled = await enable(client, account)
    assert (await verify(client, await mfa_token(client, account), code_at(enabled.secret, 1))).status_code == 200
    earlier = await verify(client, await mfa_token(client, account), code_at(enabled.secret, 0))
    assert earlier.status_code == 401


async def test_two_concurrent_verifies_of_one_code_let_exactly_one_in(client, pg, account):
    enabled = await enable(client, account)
    code = enabled.code()
    for _ in range(2):  # two rounds of two logins racing with one code (a fresh code each round)
        tokens = [await mfa_token(client, account), await mfa_token(client, account)]
        responses = await asyncio.gather(*[verify(client, token, code) for token in tokens])
        assert sorted(r.status_code for r in responses) == [200, 401]
        if enabled.offsets[-1] < 1:
            code = enabled.code()
        else:
            break
    verified = await pg.fetchval(
        "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.mfa_verified'", account.id
    )
    assert verified == 2


async def test_one_mfa_token_raced_with_the_right_code_opens_one_session(client, pg, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    code = enabled.code()
    responses = await asyncio.gather(*[verify(client, token, code) for _ in range(4)])
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401]
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id) == 2


async def test_each_recovery_code_works_once(client, account):
    enabled = await enable(client, account)
    first, second = enabled.recovery_codes[:2]
    assert (await verify(client, await mfa_token(client, account), first)).status_code == 200
    again = await verify(client, await mfa_token(client, account), first)
    assert (again.status_code, again.json()["error"]) == (401, "InvalidCredentials")
    # Dashes and case do not matter.
    relaxed = second.replace("-", "").upper()
    assert (await verify(client, await mfa_token(client, account), relaxed)).status_code == 200


async def test_a_recovery_code_of_another_user_is_wrong(client):
    alice, bob = await register(client), await register(client)
    alice_mfa, bob_mfa = await enable(client, alice), await enable(client, bob)
    response = await verify(client, await mfa_token(client, alice), bob_mfa.recovery_codes[0])
    assert response.status_code == 401
    assert (await verify(client, await mfa_token(client, alice), alice_mfa.recovery_codes[0])).status_code == 200


async def test_an_mfa_token_is_single_use(client, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    assert (await verify(client, token, enabled.code())).status_code == 200
    reused = await verify(client, token, enabled.code())
    assert (reused.status_code, reused.json()["error"]) == (401, "InvalidToken")


async def test_a_wrong_code_leaves_the_mfa_token_usable(client, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    assert (await verify(client, token, wrong_code(enabled.secret))).status_code == 401
    assert (await verify(client, token, enabled.code())).status_code == 200


async def test_an_expired_mfa_token_is_invalid(client, pg, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    await pg.execute(
        "UPDATE mfa_tokens SET expires_at = clock_timestamp() - interval '1 second' WHERE user_id = $1", account.id
    )
    response = await verify(client, token, enabled.code())
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")


async def test_an_mfa_token_is_bound_to_its_user(client):
    alice, bob = await register(client), await register(client)
    alice_mfa, bob_mfa = await enable(client, alice), await enable(client, bob)
    token = await mfa_token(client, alice)
    with_bobs_code = await verify(client, token, bob_mfa.code())
    assert (with_bobs_code.status_code, with_bobs_code.json()["error"]) == (401, "InvalidCredentials")
    response = await verify(client, token, alice_mfa.code())
    assert response.status_code == 200 and response.json()["user"]["id"] == alice.id


async def test_unknown_tokens_are_invalid_and_not_counted(client, redis_raw, app, account):
    enabled = await enable(client, account)
    for token in ("nonsense", "x" * 128, await mfa_token(client, account) + "x"):
        response = await verify(client, token, code_at(enabled.secret, 0))
        assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")
    failures = app.ctx.deps.store.keys.login_failures(account.email)
    assert await redis_raw.exists(failures) == 0


async def test_a_password_change_voids_outstanding_mfa_tokens(client, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    changed = await client.post(
        f"{API}/auth/password",
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": "another long password"},
    )
    assert changed.status_code == 200
    response = await verify(client, token, enabled.code())
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")


# -- turning it off ---------------------------------------------------------------------------


async def test_turning_mfa_off_needs_a_right_code(client, pg, account):
    enabled = await enable(client, account)
    wrong = await client.request("DELETE", TOTP, headers=account.headers, json={"code": wrong_code(enabled.secret)})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "InvalidCredentials")
    assert (await _me(client, account.headers))["mfa_enabled"] is True
    token = await mfa_token(client, account)
    off = await client.request("DELETE", TOTP, headers=account.headers, json={"code": enabled.code()})
    assert off.status_code == 204
    assert (await _me(client, account.headers))["mfa_enabled"] is False
    assert (await client.post(LOGIN, json={"email": account.email, "password": PASSWORD})).status_code == 200
    assert (await verify(client, token, enabled.code())).json()["error"] == "InvalidToken"
    assert await pg.fetchval("SELECT count(*) FROM mfa_totp WHERE user_id = $1", account.id) == 0
    assert await pg.fetchval("SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1", account.id) == 0
    assert await _audit(pg, account.id) == [
        "auth.mfa_setup",
        "auth.mfa_enabled",
        "auth.mfa_failed",
        "auth.mfa_challenged",
        "auth.mfa_disabled",
    ]


async def test_a_recovery_code_turns_mfa_off_and_it_can_be_set_up_again(client, account):
    enabled = await enable(client, account)
    off = await client.request("DELETE", TOTP, headers=account.headers, json={"code": enabled.recovery_codes[3]})
    assert off.status_code == 204
    again = await enable(client, account)
    assert set(again.recovery_codes).isdisjoint(enabled.recovery_codes)
    old = await verify(client, await mfa_token(client, account), enabled.recovery_codes[4])
    assert old.status_code == 401


async def test_turning_mfa_off_when_it_is_off_is_401(client, account):
    response = await client.request("DELETE", TOTP, headers=account.headers, json={"code": "123456"})
    assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")


async def test_secret_totp_matches_rfc_6238_parameters(client, account):
    """The secret works with any standard authenticator: SHA-1, 6 digits, 30 s."""
    secret = (await client.post(SETUP, headers=account.headers)).json()["secret"]
    standard = pyotp.TOTP(secret, digits=6, interval=30).now()
    spaced = f"{standard[:3]} {standard[3:]}"  # as authenticator apps show it
    assert (await client.post(CONFIRM, headers=account.headers, json={"code": spaced})).status_code == 200
