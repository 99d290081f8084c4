"""POST /api/v1/auth/refresh: single use, atomic rotation, grace for racing tabs, reuse."""

from __future__ import annotations

import asyncio

import pytest

from manas360.services.auth.tokens import hash_refresh_token
from manas360.settings import load_settings
from tests.fixtures.accounts import API, bearer, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.outbox import mail_bodies

URL = f"{API}/auth/refresh"


async def _refresh(client, token):
    return await client.post(URL, json={"refresh_token": token})


async def _age_rotation(pg, token, seconds):
    """Pretend the token was rotated `seconds` ago (instead of sleeping through the grace)."""
    await pg.execute(
        "UPDATE tokens SET rotated_at = rotated_at - make_interval(secs => $2) WHERE token_hash = $1",
        hash_refresh_token(token),
        float(seconds),
    )


async def test_refresh_rotates_to_a_new_pair_and_marks_the_parent_rotated(client, pg, account):
    response = await _refresh(client, account.refresh_token)
    assert response.status_code == 200
    body = response.json()
    assert body["refresh_token"] != account.refresh_token and body["user"] == account.pair["user"]
    assert (await client.get(f"{API}/me", headers=bearer(body["access_token"]))).status_code == 200
    parent = await pg.fetchrow(
        "SELECT id, rotated_at FROM tokens WHERE token_hash = $1", hash_refresh_token(account.refresh_token)
    )
    child = await pg.fetchrow(
        "SELECT parent_id FROM tokens WHERE token_hash = $1", hash_refresh_token(body["refresh_token"])
    )
    assert parent["rotated_at"] is not None and child["parent_id"] == parent["id"]


async def test_refresh_updates_the_session_last_used_time(client, pg, account):
    before = await pg.fetchval("SELECT last_used_at FROM sessions WHERE user_id = $1", account.id)
    assert (await _refresh(client, account.refresh_token)).status_code == 200
    after = await pg.fetchval("SELECT last_used_at FROM sessions WHERE user_id = $1", account.id)
    assert after > before


async def test_second_presentation_within_grace_returns_the_same_successor(client, account):
    first = (await _refresh(client, account.refresh_token)).json()
    second = (await _refresh(client, account.refresh_token)).json()
    assert second["refresh_token"] == first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    for pair in (first, second):
        assert (await client.get(f"{API}/me", headers=bearer(pair["access_token"]))).status_code == 200


async def test_fifty_concurrent_refreshes_yield_exactly_one_successor(client, pg, account):
    responses = await asyncio.gather(*[_refresh(client, account.refresh_token) for _ in range(50)])
    assert {r.status_code for r in responses} == {200}
    successors = {r.json()["refresh_token"] for r in responses}
    assert len(successors) == 1
    parent_id = await pg.fetchval(
        "SELECT id FROM tokens WHERE token_hash = $1", hash_refresh_token(account.refresh_token)
    )
    children = await pg.fetch("SELECT token_hash FROM tokens WHERE parent_id = $1", parent_id)
    assert [c["token_hash"] for c in children] == [hash_refresh_token(successors.pop())]
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM tokens WHERE user_id = $1 AND rotated_at IS NULL AND revoked_at IS NULL", account.id
        )
        == 1
    )


async def test_reuse_after_the_grace_revokes_the_whole_session(client, pg, account):
    pair = (await _refresh(client, account.refresh_token)).json()
    await _age_rotation(pg, account.refresh_token, 11)
    response = await _refresh(client, account.refresh_token)
    assert response.status_code == 401 and response.json()["error"] == "TokenReuseDetected"
    assert (await _refresh(client, pair["refresh_token"])).json()["error"] == "InvalidToken"
    for access in (pair["access_token"], account.pair["access_token"]):
        me = await client.get(f"{API}/me", headers=bearer(access))
        assert (me.status_code, me.json()["error"]) == (401, "TokenRevoked")
    session = await pg.fetchrow("SELECT revoked_at, revoke_reason FROM sessions WHERE user_id = $1", account.id)
    assert session["revoked_at"] is not None and session["revoke_reason"] == "reuse"
    assert await pg.fetchval("SELECT count(*) FROM tokens WHERE user_id = $1 AND revoked_at IS NULL", account.id) == 0
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.refresh_reuse_detected'",
            account.id,
        )
        == 1
    )


async def test_reuse_of_an_older_ancestor_within_the_grace_is_reuse(client, account):
    first = (await _refresh(client, account.refresh_token)).json()
    second = (await _refresh(client, first["refresh_token"])).json()
    response = await _refresh(client, account.refresh_token)
    assert response.json()["error"] == "TokenReuseDetected"
    assert (await _refresh(client, second["refresh_token"])).json()["error"] == "InvalidToken"


async def test_reuse_only_revokes_the_session_it_belongs_to(client, account):
    other = (await client.post(f"{API}/auth/login", json={"email": account.email, "password": account.password})).json()
    await _refresh(client, account.refresh_token)
    first = (await _refresh(client, account.refresh_token)).json()
    await _refresh(client, first["refresh_token"])
    assert (await _refresh(client, account.refresh_token)).json()["error"] == "TokenReuseDetected"
    assert (await client.get(f"{API}/me", headers=bearer(other["access_token"]))).status_code == 200
    assert (await _refresh(client, other["refresh_token"])).status_code == 200


async def test_grace_zero_makes_any_second_presentation_reuse(environ, database, redis_raw):
    strict = load_settings({**environ, "REFRESH_REUSE_GRACE_S": "0"})
    async with running_app(strict) as strict_app, client_for(strict_app) as client:
        account = await register(client)
        assert (await _refresh(client, account.refresh_token)).status_code == 200
        response = await _refresh(client, account.refresh_token)
        assert response.json()["error"] == "TokenReuseDetected"


@pytest.mark.parametrize("token", ["unknown-token", "x" * 43, ""])
async def test_unknown_refresh_token_is_invalid(client, token):
    response = await _refresh(client, token)
    assert response.status_code in (401, 422)
    if token:
        assert response.json()["error"] == "InvalidToken"


async def test_expired_refresh_token_is_invalid(client, pg, account):
    await pg.execute(
        "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        hash_refresh_token(account.refresh_token),
    )
    response = await _refresh(client, account.refresh_token)
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")


async def test_an_access_token_is_not_a_refresh_token(client, account):
    response = await _refresh(client, account.pair["access_token"])
    assert response.json()["error"] == "InvalidToken"


async def test_logout_racing_refreshes_leaves_no_live_token(client, pg):
    for _ in range(5):
        account = await register(client)
        results = await asyncio.gather(
            _refresh(client, account.refresh_token),
            client.post(f"{API}/auth/logout", headers=account.headers),
            _refresh(client, account.refresh_token),
        )
        assert results[1].status_code == 204
        assert (
            await pg.fetchval("SELECT count(*) FROM tokens WHERE user_id = $1 AND revoked_at IS NULL", account.id) == 0
        )
        for refreshed in (results[0], results[2]):
            if refreshed.status_code == 200:
                pair = refreshed.json()
                me = await client.get(f"{API}/me", headers=bearer(pair["access_token"]))
                assert me.status_code == 401
                assert (await _refresh(client, pair["refresh_token"])).status_code == 401


async def test_refreshing_a_disabled_accounts_token_is_403(client, pg, account):
    await pg.execute("UPDATE user_accounts SET status = 'disabled' WHERE id = $1", account.id)
    response = await _refresh(client, account.refresh_token)
    assert (response.status_code, response.json()["error"]) == (403, "AccountDisabled")
    assert "access_token" not in response.json()
    await pg.execute("UPDATE sessions SET revoked_at = now() WHERE user_id = $1", account.id)
    response = await _refresh(client, account.refresh_token)  # any refresh, live session or not
    assert (response.status_code, response.json()["error"]) == (403, "AccountDisabled")


async def test_an_account_deleted_during_its_refresh_gets_no_pair_and_keeps_its_token(client, pg, account, monkeypatch):
    """The refresh does not lock the account's row: an account deleted between the token's
    read and the user's read is refused (401), and the rotation rolls back."""
    from manas360.services.accounts import users

    real_get_user = users.get_user

    async def deleted_meanwhile(**kwargs):
        await pg.execute("UPDATE user_accounts SET deleted_at = now() WHERE id = $1", account.id)
        return await real_get_user(**kwargs)

    monkeypatch.setattr(users, "get_user", deleted_meanwhile)
    response = await _refresh(client, account.refresh_token)
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")
    assert (
        await pg.fetchval(
            "SELECT rotated_at FROM tokens WHERE token_hash = $1", hash_refresh_token(account.refresh_token)
        )
        is None
    )
    assert await pg.fetchval("SELECT count(*) FROM tokens WHERE user_id = $1", account.id) == 1


async def test_reuse_revokes_both_access_tokens_at_once_on_a_warm_cache(client, pg, account, settings):
    """Redis must hear of the reuse: with both access tokens already answered from a warm cache,
    a revocation only PostgreSQL knew would leave them working until the cache expired."""
    pair = (await _refresh(client, account.refresh_token)).json()
    for access in (pair["access_token"], account.pair["access_token"]):
        assert (await client.get(f"{API}/me", headers=bearer(access))).status_code == 200  # warm
    await _age_rotation(pg, account.refresh_token, 11)
    assert (await _refresh(client, account.refresh_token)).json()["error"] == "TokenReuseDetected"
    for access in (pair["access_token"], account.pair["access_token"]):
        me = await client.get(f"{API}/me", headers=bearer(access))
        assert (me.status_code, me.json()["error"]) == (401, "TokenRevoked")
    notices = await mail_bodies(pg, settings, user_id=account.id, kind="security_notice")
    assert len(notices) == 1 and "used from two places at once" in notices[0]
