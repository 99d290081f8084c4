"""A revoked session's access tokens stay refused for their whole remaining lifetime, past
every cache TTL on the way (the verified-token cache, the "revocations loaded" marker)."""

from __future__ import annotations

import asyncio
import time

import jwt

from manas360.settings import load_settings
from tests.fixtures.accounts import API, bearer, login, register
from tests.fixtures.app import client_for, running_app

ACCESS_TTL_S = 6


async def test_a_deleted_sessions_access_token_is_refused_until_it_expires(environ, database, redis_raw):
    settings = load_settings({**environ, "JWT_ACCESS_TTL": str(ACCESS_TTL_S)})
    async with running_app(settings) as app, client_for(app) as client:
        first = await register(client)
        second = await login(client, first)
        # The second session's token is known and cached everywhere before the revocation.
        assert (await client.get(f"{API}/me", headers=second.headers)).status_code == 200
        claims = jwt.decode(second.pair["access_token"], options={"verify_signature": False})
        deleted = await client.delete(f"{API}/auth/sessions/{claims['sid']}", headers=first.headers)
        assert deleted.status_code == 204
        checks = 0
        while time.time() < claims["exp"] - 0.3:
            response = await client.get(f"{API}/me", headers=bearer(second.pair["access_token"]))
            assert (response.status_code, response.json()["error"]) == (401, "TokenRevoked"), checks
            checks += 1
            await asyncio.sleep(0.4)
        assert checks >= (ACCESS_TTL_S - 1) / 0.4 - 2
        expired = await client.get(f"{API}/me", headers=second.headers)
        assert time.time() >= claims["exp"] or expired.status_code == 401
