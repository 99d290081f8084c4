"""The shipped policy table on the real authentication routes: POST /api/v1/auth/login,
/register and /password are under `auth` per client address, each route with its own
budget, and `auth` fails closed when Redis is down."""

from __future__ import annotations

from uuid import uuid4

import pytest

from manas360.settings import load_settings
from tests.edge.conftest import fresh_ip, parse_ratelimit
from tests.fixtures.app import client_for, running_app

LIMIT = 3
LOGIN, REGISTER, PASSWORD = "/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/password"


@pytest.fixture(scope="module")
async def app(environ, database, redis_raw):
    # The shipped config/ratelimits.toml (no RATE_LIMITS_FILE), with a small auth limit.
    settings = load_settings(
        {
            **environ,
            "REDIS_PREFIX": f"{environ['REDIS_PREFIX']}auth-{uuid4().hex[:8]}:",
            "RATE_LIMIT_AUTH": f"{LIMIT}/900",
        }
    )
    async with running_app(settings) as app:
        if not any(route.path == LOGIN.lstrip("/") for route in app.router.routes):
            pytest.skip("the authentication blueprint is not registered in this tree")
        yield app


def _credentials() -> dict[str, str]:
    return {"email": f"edge-{uuid4().hex}@example.com", "password": "correct horse battery"}


async def test_login_allows_the_auth_limit_per_address_then_429(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        for remaining in range(LIMIT - 1, -1, -1):  # a different unknown email each time: no lockout
            response = await client.post(LOGIN, json=_credentials())
            assert response.status_code == 401
            assert response.headers["ratelimit-policy"].endswith(f'"auth";q={LIMIT};w=900')
            auth = parse_ratelimit(response.headers["ratelimit"])[-1]
            assert (auth["policy"], auth["r"]) == ("auth", remaining)
        response = await client.post(LOGIN, json=_credentials())
    assert response.status_code == 429 and response.json()["error"] == "RateLimited"
    assert response.json()["retry_after"] == int(response.headers["retry-after"])
    async with client_for(app, client_ip=fresh_ip()) as other:  # another address is unaffected
        assert (await other.post(LOGIN, json=_credentials())).status_code == 401


async def test_register_has_its_own_budget(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        for _ in range(LIMIT):
            assert (await client.post(LOGIN, json=_credentials())).status_code == 401
        assert (await client.post(LOGIN, json=_credentials())).status_code == 429
        for _ in range(LIMIT):
            assert (await client.post(REGISTER, json=_credentials())).status_code == 201
        assert (await client.post(REGISTER, json=_credentials())).status_code == 429


async def test_other_auth_routes_are_under_global_only(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 40})
    assert response.status_code == 401
    assert response.headers["ratelimit-policy"] == '"global";q=100000;w=60'  # the test environment's


async def test_password_change_has_its_own_budget(app):
    async with client_for(app, client_ip=fresh_ip()) as registrar:
        account = (await registrar.post(REGISTER, json=_credentials())).json()
    headers = {"authorization": f"Bearer {account['access_token']}"}
    guess = {"current_password": "not the password", "new_password": "a brand new passphrase"}
    async with client_for(app, client_ip=fresh_ip()) as client:
        for remaining in range(LIMIT - 1, -1, -1):
            response = await client.post(PASSWORD, headers=headers, json=guess)
            assert response.status_code == 401
            auth = next(item for item in parse_ratelimit(response.headers["ratelimit"]) if item["policy"] == "auth")
            assert auth["r"] == remaining
        response = await client.post(PASSWORD, headers=headers, json=guess)
        assert (response.status_code, response.json()["error"]) == (429, "RateLimited")
        assert (await client.post(LOGIN, json=_credentials())).status_code == 401  # login's budget is untouched


async def test_registration_is_refused_with_503_while_redis_is_down(environ, database, pg):
    settings = load_settings({**environ, "REDIS_URL": "redis://127.0.0.1:1/0"})
    credentials = _credentials()
    async with running_app(settings) as down, client_for(down, client_ip=fresh_ip()) as client:
        response = await client.post(REGISTER, json=credentials)
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "ServiceUnavailable" and body["retry_after"] >= 1
    assert await pg.fetchval("SELECT count(*) FROM user_accounts WHERE email = $1", credentials["email"]) == 0
