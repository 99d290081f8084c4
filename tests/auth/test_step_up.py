"""Step-up: sensitive changes need a recent credential (and aal 2 with MFA on); POST
/auth/reauthenticate gives the session one; ADMIN_REQUIRE_MFA holds admin routes at aal 2."""

from __future__ import annotations

import jwt
import pytest

from manas360.settings import load_settings
from tests.auth.mfa_helpers import CONFIRM, REAUTHENTICATE, RECOVERY_CODES, SETUP, TOTP, code_at, enable, step_up
from tests.fixtures.accounts import API, PASSWORD, login, register
from tests.fixtures.app import client_for, running_app


def _claims(pair) -> dict:
    return jwt.decode(pair["access_token"], options={"verify_signature": False})


async def _age(client, pg, account, seconds: int) -> None:
    """The session's credential `seconds` old, and the account's token one refresh later (as a
    client holding a long session has it)."""
    await pg.execute(
        "UPDATE sessions SET auth_time = auth_time - make_interval(secs => $2) WHERE id = $1",
        _claims(account.pair)["sid"],
        seconds,
    )
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refreshed.status_code == 200, refreshed.text
    account.pair = refreshed.json()


async def _setup(client, account, state):
    return await client.post(SETUP, headers=account.headers)


async def _confirm(client, account, state):
    return await client.post(CONFIRM, headers=account.headers, json={"code": code_at(state["secret"], 0)})


async def _disable(client, account, state):
    return await client.request("DELETE", TOTP, headers=account.headers, json={"code": state["enabled"].code()})


async def _new_codes(client, account, state):
    return await client.post(RECOVERY_CODES, headers=account.headers, json={"code": state["enabled"].code()})


# route, MFA on before it (then aal 2 is owed too), how the change shows in the database
ROUTES = [
    ("setup", _setup, False, "SELECT count(*) FROM mfa_totp WHERE user_id = $1"),
    ("confirm", _confirm, False, "SELECT count(*) FROM user_accounts WHERE id = $1 AND mfa_enabled"),
    ("disable", _disable, True, "SELECT count(*) FROM user_accounts WHERE id = $1 AND NOT mfa_enabled"),
    (
        "recovery codes",
        _new_codes,
        True,
        "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND "
        "created_at > now() - interval '1 second' AND created_at > (SELECT "
        "confirmed_at FROM mfa_totp WHERE user_id = $1)",
    ),
]


@pytest.mark.parametrize(("name", "act", "mfa", "changed_sql"), ROUTES, ids=[row[0] for row in ROUTES])
async def test_a_stale_credential_is_refused_and_changes_nothing_until_the_user_steps_up(
    client, pg, name, act, mfa, changed_sql
):
    account = await register(client)
    state: dict = {}
    if mfa:
        state["enabled"] = await enable(client, account)
    elif name == "confirm":
        state["secret"] = (await client.post(SETUP, headers=account.headers)).json()["secret"]
    before = await pg.fetchval(changed_sql, account.id)
    await _age(client, pg, account, 301)  # REAUTH_MAX_AGE_S is 300
    refused = await act(client, account, state)
    assert (refused.status_code, refused.json()["error"]) == (403, "ReauthenticationRequired"), refused.text
    assert (refused.json()["max_age"], refused.json()["required_aal"]) == (300, 2 if mfa else 1)
    assert await pg.fetchval(changed_sql, account.id) == before
    recovery = state["enabled"].recovery_codes[1] if mfa else None
    await step_up(client, account, code=recovery)
    allowed = await act(client, account, state)
    assert allowed.status_code in (200, 204), allowed.text


async def test_an_aal1_session_of_an_mfa_account_cannot_turn_it_off_until_it_steps_up_with_a_code(client, account):
    """A password alone (a stolen session, a stolen password) never turns the second factor off."""
    secret = (await client.post(SETUP, headers=account.headers)).json()["secret"]
    assert (await client.post(CONFIRM, headers=account.headers, json={"code": code_at(secret, -1)})).status_code == 200
    refused = await client.request("DELETE", TOTP, headers=account.headers, json={"code": code_at(secret, 0)})
    assert (refused.status_code, refused.json()["error"], refused.json()["required_aal"]) == (
        403,
        "ReauthenticationRequired",
        2,
    )
    plain = await client.post(REAUTHENTICATE, headers=account.headers, json={"password": PASSWORD})
    assert (plain.status_code, plain.json()["error"]) == (403, "MfaRequired")
    await step_up(client, account, code=code_at(secret, 0))
    allowed = await client.request("DELETE", TOTP, headers=account.headers, json={"code": code_at(secret, 1)})
    assert allowed.status_code == 204, allowed.text


async def test_reauthenticate_refreshes_auth_time_for_the_same_session_and_replaces_its_refresh_token(
    client, pg, account
):
    await _age(client, pg, account, 1000)
    old = account.pair
    await step_up(client, account)
    new = _claims(account.pair)
    assert new["sid"] == _claims(old)["sid"] and new["auth_time"] > _claims(old)["auth_time"] + 900
    assert (new["amr"], new["aal"]) == (["pwd"], 1)
    stale = await client.post(f"{API}/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert stale.status_code == 401
    fresh = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    assert fresh.status_code == 200 and _claims(fresh.json())["auth_time"] == new["auth_time"]
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id) == 1


async def test_wrong_passwords_at_reauthenticate_count_toward_the_lockout(client, account):
    answers = [
        await client.post(REAUTHENTICATE, headers=account.headers, json={"password": "wrong password"})
        for _ in range(6)
    ]
    assert [a.status_code for a in answers] == [401] * 5 + [423]
    login_now = await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    assert login_now.status_code == 423


async def test_reauthenticate_with_a_code_raises_the_session_to_aal_2(client, account):
    enabled = await enable(client, account)
    await step_up(client, account, code=enabled.code())
    assert (_claims(account.pair)["amr"], _claims(account.pair)["aal"]) == (["pwd", "otp", "mfa"], 2)


async def test_reauthenticate_needs_a_live_session(client, account):
    await client.post(f"{API}/auth/logout", headers=account.headers)
    refused = await client.post(REAUTHENTICATE, headers=account.headers, json={"password": PASSWORD})
    assert (refused.status_code, refused.json()["error"]) == (401, "TokenRevoked")


# -- ADMIN_REQUIRE_MFA ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def strict_admin_app(environ, database, redis_raw):
    async with running_app(load_settings({**environ, "ADMIN_REQUIRE_MFA": "1"})) as app:
        yield app


async def test_with_admin_mfa_required_admin_routes_need_aal_2_and_writes_a_fresh_credential(
    strict_admin_app, app, db, pg
):
    from manas360.services.ops.seeding import seed_superadmin
    from tests.fixtures.accounts import Account

    email = "root-stepup@example.com"
    await seed_superadmin(
        db=app.ctx.deps.db, settings=app.ctx.deps.settings, store=app.ctx.deps.store, email=email, password=PASSWORD
    )
    async with client_for(strict_admin_app) as client:
        root = await login(client, Account(email=email, password=PASSWORD, pair={}))
        refused = await client.get(f"{API}/admin/users", headers=root.headers)
        assert (refused.status_code, refused.json()["error"]) == (403, "ReauthenticationRequired")
        assert refused.json()["required_aal"] == 2
        enabled = await enable(client, root)  # steps the session up to aal 2 with a recovery code
        assert (await client.get(f"{API}/admin/users", headers=root.headers)).status_code == 200
        member = await register(client)
        await _age(client, pg, root, 301)
        assert _claims(root.pair)["aal"] == 2  # still within AAL2_MAX_AGE_S
        assert (await client.get(f"{API}/admin/users/{member.id}", headers=root.headers)).status_code == 200
        write = await client.post(f"{API}/admin/users/{member.id}/revoke-sessions", headers=root.headers)
        assert (write.status_code, write.json()["error"]) == (403, "ReauthenticationRequired")
        assert (await client.get(f"{API}/me", headers=member.headers)).status_code == 200  # nothing revoked
        await step_up(client, root, code=enabled.recovery_codes[0])
        again = await client.post(f"{API}/admin/users/{member.id}/revoke-sessions", headers=root.headers)
        assert again.status_code == 204, again.text
