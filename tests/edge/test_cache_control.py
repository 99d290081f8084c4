"""Cache-Control (HTTP contract): every response to an authenticated request, everything
under /api/v1/auth, /api/v1/me and /api/v1/admin, and every error is `no-store`; only
/api/v1/plans, /.well-known/jwks.json and /docs* may be cached, and a docs asset keeps the
max-age its handler set."""

from __future__ import annotations

from uuid import uuid4

import pytest

from manas360.services.ops.seeding import seed_superadmin
from tests.edge.conftest import fresh_ip
from tests.fixtures.accounts import PASSWORD, Account, bearer, login, register
from tests.fixtures.app import client_for

LIMIT = 3  # per client address; every row but the 429s asks from an address of its own
NO_STORE = ["no-store"]
CACHEABLE: list[str] = []  # no Cache-Control: a cache may apply its own rules
ASSET = ["public, max-age=86400"]
BAD_BODY = {"email": "not-an-email", "password": "x"}

# (row, caller, method, path, request body, status, every Cache-Control value sent)
ROWS = [
    ("register: token pair", None, "POST", "/api/v1/auth/register", "new-account", 201, NO_STORE),
    ("login: token pair", None, "POST", "/api/v1/auth/login", "login", 200, NO_STORE),
    ("refresh: token pair", None, "POST", "/api/v1/auth/refresh", "refresh", 200, NO_STORE),
    ("sessions", "user", "GET", "/api/v1/auth/sessions", None, 200, NO_STORE),
    ("me", "user", "GET", "/api/v1/me", None, 200, NO_STORE),
    ("me, HEAD", "user", "HEAD", "/api/v1/me", None, 200, NO_STORE),
    ("dashboard", "user", "GET", "/api/v1/dashboard", None, 200, NO_STORE),
    ("admin list", "superadmin", "GET", "/api/v1/admin/users", None, 200, NO_STORE),
    ("admin analytics", "superadmin", "GET", "/api/v1/admin/analytics", None, 200, NO_STORE),
    ("plans", None, "GET", "/api/v1/plans", None, 200, CACHEABLE),
    ("plans, HEAD", None, "HEAD", "/api/v1/plans", None, 200, CACHEABLE),
    ("docs page", None, "GET", "/docs", None, 200, CACHEABLE),
    ("docs document", None, "GET", "/docs/openapi.json", None, 200, CACHEABLE),
    ("docs asset", None, "GET", "/docs/assets/swagger-ui.css", None, 200, ASSET),
    ("health", None, "GET", "/health", None, 200, NO_STORE),
    ("health live", None, "GET", "/health/live", None, 200, NO_STORE),
    ("plain public route", None, "GET", "/probe/ping", None, 200, NO_STORE),
    ("401 no token", None, "GET", "/api/v1/me", None, 401, NO_STORE),
    ("401 bad token", "bad-token", "GET", "/api/v1/dashboard", None, 401, NO_STORE),
    ("403 feature", "user", "GET", "/api/v1/premium/dashboard", None, 403, NO_STORE),
    ("403 admin", "user", "GET", "/api/v1/admin/users", None, 403, NO_STORE),
    ("404", None, "GET", "/no/such/route", None, 404, NO_STORE),
    ("404 under docs", None, "GET", "/docs/assets/no-such-file.js", None, 404, NO_STORE),
    ("404 docs oauth2 page", None, "GET", "/docs/oauth2-redirect.html", None, 404, NO_STORE),
    ("405 from sanic on plans", None, "POST", "/api/v1/plans", None, 405, NO_STORE),
    ("405 from sanic on me", "user", "PUT", "/api/v1/me", None, 405, NO_STORE),
    ("422", None, "POST", "/api/v1/auth/register", BAD_BODY, 422, NO_STORE),
    ("500", None, "GET", "/probe/crash", None, 500, NO_STORE),
    ("429 on plans", "exhausted", "GET", "/api/v1/plans", None, 429, NO_STORE),
    ("429 on me (in the guard's round trip)", "exhausted-user", "GET", "/api/v1/me", None, 429, NO_STORE),
    ("429 on docs", "exhausted", "GET", "/docs", None, 429, NO_STORE),
]


@pytest.fixture(scope="module")
async def world(edge_app):
    async with edge_app(RATE_LIMIT_GLOBAL=f"{LIMIT}/3600") as app:
        async with client_for(app, client_ip=fresh_ip()) as client:
            registered = await register(client)  # its session is the one the refresh row rotates
        async with client_for(app, client_ip=fresh_ip()) as client:
            user = await login(client, registered)
        email = f"root-cache-{uuid4().hex[:8]}@example.com"
        await seed_superadmin(
            db=app.ctx.deps.db, settings=app.ctx.deps.settings, store=app.ctx.deps.store, email=email, password=PASSWORD
        )
        async with client_for(app, client_ip=fresh_ip()) as client:
            superadmin = await login(client, Account(email=email, password=PASSWORD, pair={}))
        yield app, registered, user, superadmin


@pytest.mark.parametrize("row, caller, method, path, body, status, expected", ROWS, ids=[row[0] for row in ROWS])
async def test_cache_control(world, row, caller, method, path, body, status, expected):
    app, registered, user, superadmin = world
    headers = {
        "user": user.headers,
        "exhausted-user": user.headers,
        "superadmin": superadmin.headers,
        "bad-token": bearer("not.a.token"),
    }.get(caller, {})
    if body == "new-account":
        body = {"email": f"cache-{uuid4().hex[:12]}@example.com", "password": PASSWORD}
    elif body == "login":
        body = {"email": user.email, "password": PASSWORD}
    elif body == "refresh":
        body = {"refresh_token": registered.refresh_token}
    async with client_for(app, client_ip=fresh_ip()) as client:
        if caller is not None and caller.startswith("exhausted"):
            for _ in range(LIMIT):  # the address's whole `global` budget, on a cacheable route
                assert (await client.get("/api/v1/plans")).status_code == 200
        response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers.get_list("cache-control") == expected
