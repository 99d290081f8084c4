"""The recovery routes under the shipped `auth` policy: per client address, each route with
its own budget (a flood of reset requests spends neither the confirm's nor the login's)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from manas360.settings import load_settings
from tests.edge.conftest import fresh_ip, parse_ratelimit
from tests.fixtures.accounts import API, register
from tests.fixtures.app import client_for, running_app

LIMIT = 3
ROUTES = (f"{API}/auth/password-reset", f"{API}/auth/password-reset/confirm", f"{API}/auth/verify-email/resend")


@pytest.fixture(scope="module")
async def limited_app(environ, database, redis_raw):
    settings = load_settings(
        {
            **environ,
            "REDIS_PREFIX": f"{environ['REDIS_PREFIX']}mail-{uuid4().hex[:8]}:",
            "RATE_LIMIT_AUTH": f"{LIMIT}/900",
        }
    )
    async with running_app(settings) as app:
        yield app


async def test_each_recovery_route_has_its_own_auth_budget(limited_app):
    async with client_for(limited_app, client_ip=fresh_ip()) as registrar:
        account = await register(registrar)
    bodies = {
        ROUTES[0]: {"email": "nobody@example.com"},
        ROUTES[1]: {"token": "no-such-token", "new_password": "a brand new passphrase"},
        ROUTES[2]: None,
    }
    expected = {ROUTES[0]: 202, ROUTES[1]: 401, ROUTES[2]: 202}
    async with client_for(limited_app, client_ip=fresh_ip()) as client:
        for route in ROUTES:
            for remaining in range(LIMIT - 1, -1, -1):
                response = await client.post(route, json=bodies[route], headers=account.headers)
                assert response.status_code == expected[route], response.text
                auth = next(item for item in parse_ratelimit(response.headers["ratelimit"]) if item["policy"] == "auth")
                assert auth["r"] == remaining
            refused = await client.post(route, json=bodies[route], headers=account.headers)
            assert (refused.status_code, refused.json()["error"]) == (429, "RateLimited")
            assert int(refused.headers["retry-after"]) == refused.json()["retry_after"]
        # /verify-email itself is not under `auth`: its token is the only credential, 256 bits.
        response = await client.post(f"{API}/auth/verify-email", json={"token": "no-such-token"})
        assert response.status_code == 401
