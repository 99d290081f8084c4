"""A store down: fail closed with 503, lose nothing, repair what could not be written."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from manas360 import after_commit as repair
from manas360.services.auth import revocation
from manas360.services.auth import signout as auth
from manas360.services.auth.sessions import Client
from manas360.settings import load_settings
from manas360.store.client import close_store, open_store
from tests.fixtures.accounts import API, PASSWORD, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.gates import eventually
from tests.fixtures.services import redis_server

CLOSED = "127.0.0.1:1"


@pytest.fixture(scope="module")
async def no_database_app(environ, database, redis_raw):
    settings = load_settings({**environ, "DATABASE_URL": f"postgres://root@{CLOSED}/nowhere"})
    async with running_app(settings) as app:
        yield app


@pytest.fixture(scope="module")
async def no_redis_app(environ, database, redis_raw):
    settings = load_settings({**environ, "REDIS_URL": f"redis://{CLOSED}/0"})
    async with running_app(settings) as app:
        yield app


@pytest.mark.parametrize(
    "path, body",
    [
        ("/auth/login", {"email": "someone@example.com", "password": PASSWORD}),
        ("/auth/register", {"email": "someone@example.com", "password": PASSWORD}),
        ("/auth/refresh", {"refresh_token": "x" * 43}),
    ],
)
async def test_postgresql_down_makes_login_register_and_refresh_503(no_database_app, path, body):
    async with client_for(no_database_app) as client:
        response = await client.post(f"{API}{path}", json=body)
    assert response.status_code == 503
    assert response.json()["error"] == "ServiceUnavailable" and response.json()["retry_after"] > 0


async def test_redis_down_makes_login_and_authenticated_routes_503(no_redis_app, client):
    account = await register(client)
    async with client_for(no_redis_app) as down:
        login = await down.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
        me = await down.get(f"{API}/me", headers=account.headers)
        logout = await down.post(f"{API}/auth/logout", headers=account.headers)
    assert (login.status_code, me.status_code, logout.status_code) == (503, 503, 503)
    # Failing closed: nothing was half-done.
    assert (await client.get(f"{API}/me", headers=account.headers)).status_code == 200


async def test_a_revocation_redis_missed_is_committed_and_repaired(client, pg, account, monkeypatch):
    assert (await client.get(f"{API}/me", headers=account.headers)).status_code == 200  # warm: marker loaded
    real = revocation.record_revocations
    failures = []

    async def flaky(store, **kwargs):
        if not failures:
            failures.append(kwargs)
            raise RedisConnectionError("simulated outage")
        await real(store, **kwargs)

    monkeypatch.setattr(revocation, "record_revocations", flaky)
    monkeypatch.setattr(repair, "_FIRST_DELAY_S", 0.01)
    response = await client.post(f"{API}/auth/logout", headers=account.headers)
    assert response.status_code == 503
    # PostgreSQL has it already: nothing is lost.
    assert await pg.fetchval("SELECT revoked_at IS NOT NULL FROM sessions WHERE user_id = $1", account.id)
    for _ in range(100):  # the repair runs in the background; wait for it, bounded
        me = await client.get(f"{API}/me", headers=account.headers)
        if me.status_code == 401:
            break
        await asyncio.sleep(0.01)
    assert me.json()["error"] == "TokenRevoked"


async def _paused_clients(admin) -> int:
    return sum("b" in client["flags"] for client in await admin.client_list())


async def test_a_revocation_lands_even_if_the_request_is_cancelled_after_the_commit(app, db, client, pg):
    """A client that disconnects cancels its handler; the Redis step after the commit must
    still run. Redis here is a private server whose writes are held (CLIENT PAUSE WRITE)
    until the handler has been cancelled in the middle of that step."""
    account = await register(client)
    principal = app.ctx.deps.codec.verify(account.pair["access_token"])
    with redis_server() as private:
        store = open_store(url=private.url, prefix=app.ctx.deps.settings.redis_prefix)
        admin = Redis.from_url(private.url, decode_responses=True)
        try:
            await admin.client_pause(10_000, all=False)
            task = asyncio.create_task(
                auth.logout(
                    db=app.ctx.deps.db,
                    settings=app.ctx.deps.settings,
                    store=store,
                    principal=principal,
                    client=Client(),
                )
            )
            await eventually(lambda: _paused_clients(admin), what="the revocation write in flight")
            assert await pg.fetchval("SELECT revoked_at IS NOT NULL FROM sessions WHERE id = $1", principal.session_id)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await admin.client_unpause()
            key = store.keys.revoked_session(principal.user_id, principal.session_id)
            await eventually(lambda: admin.exists(key), what="the session's revocation in Redis")
        finally:
            await admin.aclose()
            await close_store(store)
