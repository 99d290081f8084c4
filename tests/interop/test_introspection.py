"""Introspection (RFC 7662) as another service meets it: service keys, JSON and form bodies,
and every way a token dies flipping `active` on the very next call."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from manas360.services.access.entitlements import forget_user
from tests.fixtures.accounts import API, PASSWORD, login, register
from tests.fixtures.environment import SERVICE_KEY, delete_prefixed_keys

INTROSPECT = f"{API}/auth/introspect"
SERVICE = {"authorization": f"Bearer {SERVICE_KEY}"}
NEW_PASSWORD = "an entirely new passphrase"


async def _introspect(client, token: str, **kwargs) -> dict:
    response = await client.post(INTROSPECT, headers=SERVICE, json={"token": token}, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "ratelimit" not in response.headers  # a service with a key is under no policy
    return response.json()


async def test_a_live_access_token_is_active_with_its_claims_and_live_entitlements(client, account):
    answer = await _introspect(client, account.pair["access_token"])
    assert answer["active"] is True
    assert answer["sub"] == account.id and answer["role"] == "user" and answer["plan"] == "free"
    assert answer["token_type"] == "Bearer" and answer["aal"] == 1 and answer["amr"] == ["pwd"]
    assert answer["iss"] == "manas360" and answer["aud"] == "manas360-api"
    assert answer["exp"] > answer["iat"] >= answer["auth_time"]
    assert isinstance(answer["permissions"], list) and answer["permissions"] == sorted(answer["permissions"])


async def test_form_encoded_bodies_as_rfc_7662_posts_them(client, account):
    form = await client.post(
        INTROSPECT, headers=SERVICE, content=f"token={account.pair['access_token']}&token_type_hint=access_token"
    )
    assert form.status_code == 400  # no content type: neither a form nor JSON
    form = await client.post(
        INTROSPECT, headers=SERVICE, data={"token": account.pair["access_token"], "token_type_hint": "access_token"}
    )
    assert form.status_code == 200 and form.json()["active"] is True
    repeated = await client.post(
        INTROSPECT, headers={**SERVICE, "content-type": "application/x-www-form-urlencoded"}, content=b"token=a&token=b"
    )
    assert repeated.status_code == 400


@pytest.mark.parametrize("token", ["refresh", "garbage", "", "mfa_like", "tampered"])
async def test_anything_but_an_access_token_is_inactive_and_nothing_more(client, account, token):
    access = account.pair["access_token"]
    tampered = access[:-2] + ("AA" if access[-2:] != "AA" else "BB")
    presented = {
        "refresh": account.refresh_token,
        "garbage": "not-a-token",
        "": "x" * 9000,
        "mfa_like": secrets.token_urlsafe(32),
        "tampered": tampered,
    }
    response = await client.post(INTROSPECT, headers=SERVICE, json={"token": presented[token]})
    if token == "":  # longer than any token: refused as a malformed body
        assert response.status_code == 422
        return
    assert response.status_code == 200 and response.json() == {"active": False}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        f"Basic {SERVICE_KEY}",
        "Bearer wrong-key-" + "x" * 32,
        f"Bearer {SERVICE_KEY[:-1]}",
        f"Bearer {SERVICE_KEY}x",
    ],
)
async def test_a_call_without_a_valid_service_key_is_401_and_counted(client, account, authorization):
    headers = {"authorization": authorization} if authorization else {}
    before = await _unauthorized_count(client)
    response = await client.post(INTROSPECT, headers=headers, json={"token": account.pair["access_token"]})
    assert (response.status_code, response.json()["error"]) == (401, "Unauthorized")
    assert "RateLimit" in response.headers  # counted under `auth`
    assert "sub" not in response.text
    assert await _unauthorized_count(client) == before + 1


async def test_a_user_access_token_is_not_a_service_key(client, account):
    response = await client.post(INTROSPECT, headers=account.headers, json={"token": account.pair["access_token"]})
    assert response.status_code == 401


async def test_introspection_spends_nothing_of_the_users_api_budget(client, account, redis_raw, app):
    key = app.ctx.deps.store.keys.user_rate(account.id, "api")
    before = await redis_raw.zcard(key) if await redis_raw.type(key) == "zset" else await redis_raw.get(key)
    for _ in range(3):
        assert (await _introspect(client, account.pair["access_token"]))["active"] is True
    after = await redis_raw.zcard(key) if await redis_raw.type(key) == "zset" else await redis_raw.get(key)
    assert before == after


async def _unauthorized_count(client) -> float:
    from manas360.metrics import INTROSPECTIONS

    return INTROSPECTIONS.labels("unauthorized")._value.get()


# Every way a token dies (the contract's revocation list, docs/api.md, and the account states), each as the
# action that kills it: the dead token must be inactive on the very next call, with the
# cache warm (it answered active just before).
async def _logout(client, account, **_):
    assert (await client.post(f"{API}/auth/logout", headers=account.headers)).status_code == 204


async def _logout_all(client, account, **_):
    other = await login(client, account)
    assert (await client.post(f"{API}/auth/logout-all", headers=other.headers)).status_code == 204


async def _password_change(client, account, **_):
    other = await login(client, account)
    changed = await client.post(
        f"{API}/auth/password", headers=other.headers, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert changed.status_code == 200, changed.text


async def _session_delete(client, account, **_):
    other = await login(client, account)
    sessions = (await client.get(f"{API}/auth/sessions", headers=account.headers)).json()["items"]
    mine = next(item["id"] for item in sessions if item["current"])
    assert (await client.delete(f"{API}/auth/sessions/{mine}", headers=other.headers)).status_code == 204


async def _admin_revoke(client, account, admin, **_):
    response = await client.post(f"{API}/admin/users/{account.id}/revoke-sessions", headers=admin)
    assert response.status_code == 204


async def _admin_disable(client, account, admin, **_):
    response = await client.put(f"{API}/admin/users/{account.id}/status", headers=admin, json={"status": "disabled"})
    assert response.status_code == 200, response.text


async def _refresh_reuse(client, account, **_):
    first = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    second = await client.post(f"{API}/auth/refresh", json={"refresh_token": first.json()["refresh_token"]})
    assert second.status_code == 200
    reuse = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    assert reuse.json()["error"] == "TokenReuseDetected"


async def _password_reset(client, account, pg, **_):
    token = secrets.token_urlsafe(32)
    await pg.execute(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at) "
        "VALUES ($1, $2, 'password_reset', now() + interval '30 minutes')",
        hashlib.sha256(token.encode()).hexdigest(),
        account.id,
    )
    confirmed = await client.post(
        f"{API}/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert confirmed.status_code == 200, confirmed.text


async def _user_deleted(client, account, pg, app, **_):
    await pg.execute("UPDATE user_accounts SET deleted_at = now() WHERE id = $1", account.id)
    await forget_user(store=app.ctx.deps.store, user_id=account.id)


KILLS = [
    _logout,
    _logout_all,
    _password_change,
    _session_delete,
    _admin_revoke,
    _admin_disable,
    _refresh_reuse,
    _password_reset,
    _user_deleted,
]


@pytest.mark.parametrize("kill", KILLS, ids=lambda kill: kill.__name__.strip("_"))
async def test_every_revocation_path_flips_active_on_the_very_next_call(client, pg, app, superadmin_headers, kill):
    account = await register(client)
    assert (await _introspect(client, account.pair["access_token"]))["active"] is True  # warm
    await kill(client, account, admin=superadmin_headers, pg=pg, app=app)
    assert await _introspect(client, account.pair["access_token"]) == {"active": False}
    # ...and it says the same as the API itself.
    assert (await client.get(f"{API}/me", headers=account.headers)).status_code in (401, 403)


async def test_a_role_change_shows_on_the_next_call_and_the_token_stays_active(client, superadmin_headers):
    account = await register(client)
    assert (await _introspect(client, account.pair["access_token"]))["role"] == "user"
    changed = await client.put(
        f"{API}/admin/users/{account.id}/role", headers=superadmin_headers, json={"role": "subscriber"}
    )
    assert changed.status_code == 200, changed.text
    answer = await _introspect(client, account.pair["access_token"])
    assert answer["active"] is True and answer["role"] == "subscriber"


async def test_a_cold_cache_answers_from_postgresql_and_stays_exact(client, redis_raw, app):
    account = await register(client)
    await _logout(client, await login(client, account))  # another session revoked: this one lives
    await delete_prefixed_keys(redis_raw, app.ctx.deps.settings.redis_prefix)  # Redis lost everything
    assert (await _introspect(client, account.pair["access_token"]))["active"] is True
    await _logout(client, account)
    await delete_prefixed_keys(redis_raw, app.ctx.deps.settings.redis_prefix)
    assert await _introspect(client, account.pair["access_token"]) == {"active": False}


async def test_an_unknown_user_is_inactive(client, app):
    codec = app.ctx.deps.codec
    token, _ = codec.encode(
        user_id="00000000-0000-4000-8000-000000000000", session_id="00000000-0000-4000-8000-000000000001"
    )
    assert await _introspect(client, token) == {"active": False}


async def test_with_no_service_keys_configured_everyone_is_refused(environ, database, redis_raw):
    from manas360.settings import load_settings
    from tests.fixtures.app import client_for, running_app

    async with running_app(load_settings({**environ, "INTROSPECTION_KEYS": ""})) as bare, client_for(bare) as client:
        account = await register(client)
        for headers in ({"authorization": "Bearer "}, SERVICE, account.headers):
            response = await client.post(INTROSPECT, headers=headers, json={"token": account.pair["access_token"]})
            assert (response.status_code, response.json()["error"]) == (401, "Unauthorized")


async def test_a_warm_introspection_runs_no_sql_and_one_redis_round_trip(client, account, monkeypatch):
    from tests.fixtures.counting import counting

    await _introspect(client, account.pair["access_token"])  # warm: context and revocations cached
    with counting(monkeypatch) as counts:
        answer = await _introspect(client, account.pair["access_token"])
    assert answer["active"] is True
    assert counts == {"sql": 0, "redis": 1}
