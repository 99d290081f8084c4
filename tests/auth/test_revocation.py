"""Logout, logout-all, password change and deleted sessions: revoked at once, durably."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures.accounts import API, PASSWORD, bearer, login, register
from tests.fixtures.environment import delete_prefixed_keys

NEW_PASSWORD = "a brand new passphrase"


async def _me(client, access_token):
    response = await client.get(f"{API}/me", headers=bearer(access_token))
    return response.status_code, response.json().get("error")


async def _refresh_status(client, refresh_token):
    return (await client.post(f"{API}/auth/refresh", json={"refresh_token": refresh_token})).status_code


async def test_logout_revokes_the_sessions_access_and_refresh_tokens_at_once(client, pg, account):
    refreshed = (await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})).json()
    other = await login(client, account)
    response = await client.post(f"{API}/auth/logout", headers=bearer(refreshed["access_token"]))
    assert response.status_code == 204 and response.content == b""
    # Both access tokens of the session (before and after its refresh) and its refresh token.
    assert await _me(client, refreshed["access_token"]) == (401, "TokenRevoked")
    assert await _me(client, account.pair["access_token"]) == (401, "TokenRevoked")
    assert await _refresh_status(client, refreshed["refresh_token"]) == 401
    # Another session of the same user is untouched.
    assert await _me(client, other.pair["access_token"]) == (200, None)
    row = await pg.fetchrow("SELECT reason, session_id FROM revoked_access_tokens WHERE user_id = $1", account.id)
    assert row["reason"] == "logout"
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.logout'", account.id
        )
        == 1
    )


async def test_logout_needs_a_live_token(client, account):
    assert (await client.post(f"{API}/auth/logout")).json()["error"] == "Unauthorized"
    await client.post(f"{API}/auth/logout", headers=account.headers)
    response = await client.post(f"{API}/auth/logout", headers=account.headers)
    assert (response.status_code, response.json()["error"]) == (401, "TokenRevoked")


async def test_logout_all_revokes_every_session(client, pg, account):
    second, third = await login(client, account), await login(client, account)
    assert (await client.post(f"{API}/auth/logout-all", headers=second.headers)).status_code == 204
    for session in (account, second, third):
        assert await _me(client, session.pair["access_token"]) == (401, "TokenRevoked")
        assert await _refresh_status(client, session.refresh_token) == 401
    assert await pg.fetchval("SELECT tokens_valid_after IS NOT NULL FROM user_accounts WHERE id = $1", account.id)
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", account.id) == 0
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.logout_all'", account.id
        )
        == 1
    )


async def test_a_login_right_after_logout_all_is_not_killed_by_the_epoch(client, account):
    await client.post(f"{API}/auth/logout-all", headers=account.headers)
    fresh = await login(client, account)
    assert await _me(client, fresh.pair["access_token"]) == (200, None)


async def test_password_change_revokes_every_session_and_returns_the_only_live_pair(client, pg, account):
    other = await login(client, account)
    response = await client.post(
        f"{API}/auth/password",
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 200
    pair = response.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    for session in (account, other):
        assert await _me(client, session.pair["access_token"]) == (401, "TokenRevoked")
        assert await _refresh_status(client, session.refresh_token) == 401
    assert await _me(client, pair["access_token"]) == (200, None)
    assert await _refresh_status(client, pair["refresh_token"]) == 200
    live = await pg.fetch("SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", account.id)
    assert len(live) == 1
    old = await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    new = await client.post(f"{API}/auth/login", json={"email": account.email, "password": NEW_PASSWORD})
    assert (old.status_code, new.status_code) == (401, 200)
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.password_changed'", account.id
        )
        == 1
    )


async def test_password_change_with_a_wrong_current_password_changes_nothing(client, account):
    response = await client.post(
        f"{API}/auth/password",
        headers=account.headers,
        json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
    )
    assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")
    assert await _me(client, account.pair["access_token"]) == (200, None)


@pytest.mark.parametrize(
    "body",
    [
        {"current_password": PASSWORD, "new_password": "short"},
        {"current_password": PASSWORD, "new_password": "x" * 129},
        {"current_password": PASSWORD},
    ],
)
async def test_password_change_validates_the_new_password(client, account, body):
    response = await client.post(f"{API}/auth/password", headers=account.headers, json=body)
    assert response.status_code == 422


async def test_sessions_are_listed_newest_first_with_the_current_one_marked(client, account):
    second = await login(client, account)
    response = await client.get(f"{API}/auth/sessions", headers=second.headers)
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 2
    assert set(items[0]) == {"id", "created_at", "last_used_at", "ip", "user_agent", "current"}
    assert [item["current"] for item in items] == [True, False]
    assert items[0]["ip"] == "127.0.0.1"


async def test_deleting_a_session_revokes_it(client, account):
    second = await login(client, account)
    items = (await client.get(f"{API}/auth/sessions", headers=account.headers)).json()["items"]
    target = next(item["id"] for item in items if not item["current"])
    assert (await client.delete(f"{API}/auth/sessions/{target}", headers=account.headers)).status_code == 204
    assert await _me(client, second.pair["access_token"]) == (401, "TokenRevoked")
    assert await _refresh_status(client, second.refresh_token) == 401
    assert await _me(client, account.pair["access_token"]) == (200, None)
    again = await client.delete(f"{API}/auth/sessions/{target}", headers=account.headers)
    assert again.status_code == 404


@pytest.mark.parametrize("session_id", [str(uuid.uuid4()), "not-a-uuid", "1' OR '1'='1", "%00"])
async def test_deleting_an_unknown_or_malformed_session_is_404(client, account, session_id):
    response = await client.delete(f"{API}/auth/sessions/{session_id}", headers=account.headers)
    assert (response.status_code, response.json()["error"]) == (404, "NotFound")


async def test_someone_elses_session_is_404_and_stays_alive(client, account):
    stranger = await register(client)
    theirs = (await client.get(f"{API}/auth/sessions", headers=stranger.headers)).json()["items"][0]["id"]
    response = await client.delete(f"{API}/auth/sessions/{theirs}", headers=account.headers)
    assert response.status_code == 404
    assert await _me(client, stranger.pair["access_token"]) == (200, None)


async def test_revocations_survive_losing_every_redis_key(client, redis_raw, settings):
    logged_out, everywhere, changed, untouched = [await register(client) for _ in range(4)]
    await client.post(f"{API}/auth/logout", headers=logged_out.headers)
    await client.post(f"{API}/auth/logout-all", headers=everywhere.headers)
    pair = (
        await client.post(
            f"{API}/auth/password",
            headers=changed.headers,
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
    ).json()
    for _ in range(2):  # the first round reloads from PostgreSQL, the second reads what it wrote back
        await delete_prefixed_keys(redis_raw, settings.redis_prefix)
        for revoked in (logged_out, everywhere, changed):
            assert await _me(client, revoked.pair["access_token"]) == (401, "TokenRevoked")
        assert await _me(client, pair["access_token"]) == (200, None)
        assert await _me(client, untouched.pair["access_token"]) == (200, None)
    loaded = await redis_raw.exists(f"{settings.redis_prefix}{{u:{logged_out.id}}}:revloaded")
    assert loaded == 1


async def test_a_cold_cache_is_refilled_from_postgresql(client, redis_raw, settings, account):
    await client.post(f"{API}/auth/logout", headers=account.headers)
    await delete_prefixed_keys(redis_raw, settings.redis_prefix)
    assert await _me(client, account.pair["access_token"]) == (401, "TokenRevoked")
    tag = f"{settings.redis_prefix}{{u:{account.id}}}"
    keys = sorted(k.removeprefix(tag) for k in await redis_raw.keys(f"{tag}*") if ":rl:" not in k)
    assert keys[0] == ":ctx"  # the user's context is refilled by the same query
    assert keys[1].startswith(":rev:") and keys[2] == ":revloaded" and keys[3].startswith(":srev:")
    ttls = [await redis_raw.pttl(f"{tag}{k}") for k in keys]
    assert all(0 < ttl <= 960_000 for ttl in ttls)


async def test_revoked_sessions_are_not_listed(client, account):
    second = await login(client, account)
    before = (await client.get(f"{API}/auth/sessions", headers=second.headers)).json()["items"]
    revoked = next(item["id"] for item in before if item["current"])
    assert (await client.post(f"{API}/auth/logout", headers=second.headers)).status_code == 204
    items = (await client.get(f"{API}/auth/sessions", headers=account.headers)).json()["items"]
    assert len(before) == 2 and [item["id"] for item in items] == [
        item["id"] for item in before if item["id"] != revoked
    ]
