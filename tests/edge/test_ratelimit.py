"""Rate limits through HTTP: exact admission at the boundary, the draft-11 headers on every
limited response (errors included), exempt paths, preflights, per-route policies declared
by decorator or by the policy table, and the per-user seam for the authentication guard."""

from __future__ import annotations

import asyncio

import pytest
from sanic import Blueprint

from manas360.edge import rate_limited
from manas360.http.responses import json_response
from tests.edge.conftest import fresh_ip, parse_ratelimit
from tests.fixtures.accounts import register
from tests.fixtures.app import client_for, running_app

GLOBAL, AUTH, API = 6, 3, 2
WINDOW = 3600


@pytest.fixture(scope="module")
async def app(edge_app):
    async with edge_app(
        RATE_LIMIT_GLOBAL=f"{GLOBAL}/{WINDOW}", RATE_LIMIT_AUTH=f"{AUTH}/{WINDOW}", RATE_LIMIT_API=f"{API}/{WINDOW}"
    ) as app:
        yield app


@pytest.fixture
async def client(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        yield client


def assert_rate_limited(response) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "RateLimited" and body["request_id"] == response.headers["x-request-id"]
    retry_after = int(response.headers["retry-after"])
    assert body["retry_after"] == retry_after >= 1
    return retry_after


# exactness and headers --------------------------------------------------------------------


async def test_global_admits_exactly_the_limit_then_refuses(client):
    statuses = [(await client.get("/probe/ping")).status_code for _ in range(GLOBAL + 3)]
    assert statuses == [200] * GLOBAL + [429] * 3


async def test_headers_follow_draft_11_and_count_down(client):
    for remaining in range(GLOBAL - 1, -1, -1):
        response = await client.get("/probe/ping")
        assert response.headers["ratelimit-policy"] == f'"global";q={GLOBAL};w={WINDOW}'
        [item] = parse_ratelimit(response.headers["ratelimit"])
        assert item["policy"] == "global" and item["r"] == remaining
        # While quota remains, t is the rest of the window; once spent, the wait until the
        # next admission, which can reach into the window after.
        assert 1 <= item["t"] <= (WINDOW if remaining else 2 * WINDOW)
        assert "retry-after" not in response.headers


async def test_a_429_has_the_envelope_and_retry_after_equal_to_t(client):
    for _ in range(GLOBAL):
        await client.get("/probe/ping")
    response = await client.get("/probe/ping")
    retry_after = assert_rate_limited(response)
    [item] = parse_ratelimit(response.headers["ratelimit"])
    assert (item["r"], item["t"]) == (0, retry_after)
    assert response.headers["ratelimit-policy"] == f'"global";q={GLOBAL};w={WINDOW}'
    for name in ("x-content-type-options", "x-frame-options", "content-security-policy"):
        assert name in response.headers


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/no/such/route", 404),
        ("DELETE", "/probe/ping", 405),
        ("GET", "/probe/crash", 500),
        ("POST", "/probe/echo", 400),
    ],
)
async def test_error_responses_of_limited_requests_carry_the_headers(client, method, path, status):
    response = await client.request(method, path)
    assert response.status_code == status
    [item] = parse_ratelimit(response.headers["ratelimit"])
    assert item["policy"] == "global" and item["r"] == GLOBAL - 1


async def test_probes_are_never_limited_and_carry_no_headers(client):
    for _ in range(GLOBAL + 3):
        for path in ("/health/live", "/health/ready", "/health"):
            response = await client.get(path)
            assert response.status_code == 200
            assert "ratelimit" not in response.headers and "ratelimit-policy" not in response.headers
    assert (await client.get("/probe/ping")).status_code == 200  # the probes spent nothing


async def test_docs_are_under_global(client):
    # Building the OpenAPI document costs milliseconds: it must not be an unmetered endpoint.
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    assert parse_ratelimit(response.headers["ratelimit"])[0]["r"] == GLOBAL - 1


async def test_a_cors_preflight_is_not_charged_but_other_options_are(client):
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    for _ in range(GLOBAL + 2):
        response = await client.options("/probe/echo", headers=preflight)
        assert response.status_code == 204 and "ratelimit" not in response.headers
    response = await client.options("/probe/echo")
    assert response.status_code == 204
    assert parse_ratelimit(response.headers["ratelimit"])[0]["r"] == GLOBAL - 1


# per-route policies ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/probe/login", "/probe/register"])
async def test_a_route_policy_declared_or_listed_applies_with_global(client, path):
    """/probe/login declares @rate_limited("auth"); /probe/register is listed in the table."""
    for remaining in range(AUTH - 1, -1, -1):
        response = await client.post(path)
        assert response.status_code == 200
        assert response.headers["ratelimit-policy"] == (f'"global";q={GLOBAL};w={WINDOW}, "auth";q={AUTH};w={WINDOW}')
        assert [i["policy"] for i in parse_ratelimit(response.headers["ratelimit"])] == ["global", "auth"]
        assert parse_ratelimit(response.headers["ratelimit"])[1]["r"] == remaining
    response = await client.post(path)
    retry_after = assert_rate_limited(response)
    global_item, auth_item = parse_ratelimit(response.headers["ratelimit"])
    assert global_item["r"] == GLOBAL - AUTH - 1  # the refused attempt reached the server
    assert (auth_item["r"], auth_item["t"]) == (0, retry_after)


async def test_ip_plus_route_gives_each_route_its_own_budget(client):
    for _ in range(AUTH):
        assert (await client.post("/probe/login")).status_code == 200
    assert (await client.post("/probe/login")).status_code == 429
    assert (await client.post("/probe/register")).status_code == 200


async def test_a_request_refused_by_global_spends_nothing_of_its_route_policy(app, redis_raw):
    address = fresh_ip()
    async with client_for(app, client_ip=address) as client:
        for _ in range(GLOBAL):
            await client.get("/probe/ping")
        response = await client.post("/probe/login")
    assert_rate_limited(response)
    assert response.headers["ratelimit-policy"] == f'"global";q={GLOBAL};w={WINDOW}'
    assert await redis_raw.exists(app.ctx.deps.store.keys.ip_rate(address, "global"))
    assert not await redis_raw.exists(app.ctx.deps.store.keys.ip_rate(address, "auth", "POST/probe/login"))


async def test_head_is_counted_like_get(client):
    for _ in range(GLOBAL):
        assert (await client.head("/probe/ping")).status_code == 200
    assert (await client.get("/probe/ping")).status_code == 429


# the authentication guard's seam --------------------------------------------------------------


async def test_the_per_user_policy_is_checked_and_rendered_with_global(app, client):
    user_id = f"user-{fresh_ip()}"
    for remaining in range(API - 1, -1, -1):
        response = await client.get(f"/probe/users/{user_id}")
        assert response.status_code == 200
        global_item, api_item = parse_ratelimit(response.headers["ratelimit"])
        assert (api_item["policy"], api_item["r"]) == ("api", remaining)
    response = await client.get(f"/probe/users/{user_id}")
    assert_rate_limited(response)
    assert response.headers["ratelimit-policy"] == f'"global";q={GLOBAL};w={WINDOW}, "api";q={API};w={WINDOW}'
    # The counter lives in the user's hash tag, shared by every address the user comes from.
    async with client_for(app, client_ip=fresh_ip()) as elsewhere:
        assert (await elsewhere.get(f"/probe/users/{user_id}")).status_code == 429


async def test_the_api_limit_through_a_real_authenticated_route(edge_app):
    """GET /api/v1/me, not a probe: the guard's own verdict becomes the 429 and its headers."""
    async with edge_app(RATE_LIMIT_API="3/60") as app, client_for(app, client_ip=fresh_ip()) as client:
        account = await register(client)
        for remaining in (2, 1, 0):
            response = await client.get("/api/v1/me", headers=account.headers)
            assert response.status_code == 200, response.text
            api = {item["policy"]: item for item in parse_ratelimit(response.headers["ratelimit"])}["api"]
            assert api["r"] == remaining
        refused = await client.get("/api/v1/me", headers=account.headers)
        retry_after = assert_rate_limited(refused)
        api = {item["policy"]: item for item in parse_ratelimit(refused.headers["ratelimit"])}["api"]
        assert api["r"] == 0 and api["t"] == retry_after and 1 <= retry_after <= 60
        assert '"api";q=3;w=60' in refused.headers["ratelimit-policy"]


async def test_global_on_a_guarded_route_rides_in_the_users_round_trip(edge_app):
    """The per-IP `global` limit of a guarded route is checked in the guard's one round trip,
    first: a request it refuses is a 429 that spent nothing of the user's `api` budget; a
    request refused before Redis (no token, a bad one) still counts against it."""
    async with (
        edge_app(RATE_LIMIT_GLOBAL="4/3600", RATE_LIMIT_API="100/3600") as app,
        client_for(app, client_ip=fresh_ip()) as client,
    ):
        account = await register(client)  # global 1 of 4 (with `auth`, checked at the edge)

        def items(response):
            return {item["policy"]: item for item in parse_ratelimit(response.headers["ratelimit"])}

        ok = await client.get("/api/v1/me", headers=account.headers)
        assert ok.status_code == 200 and ok.headers["ratelimit"].startswith('"global"')
        assert (items(ok)["global"]["r"], items(ok)["api"]["r"]) == (2, 99)
        bad = await client.get("/api/v1/me", headers={"authorization": "Bearer not-a-token"})
        assert bad.status_code == 401 and bad.json()["error"] == "InvalidToken"
        assert list(items(bad)) == ["global"] and items(bad)["global"]["r"] == 1
        anonymous = await client.get("/api/v1/me")
        assert anonymous.status_code == 401 and items(anonymous)["global"]["r"] == 0
        refused = await client.get("/api/v1/me", headers=account.headers)
        retry_after = assert_rate_limited(refused)
        assert list(items(refused)) == ["global"] and items(refused)["global"]["t"] == retry_after
        throttled_bad = await client.get("/api/v1/me", headers={"authorization": "Bearer not-a-token"})
        assert throttled_bad.status_code == 429
        async with client_for(app, client_ip=fresh_ip()) as elsewhere:
            again = await elsewhere.get("/api/v1/me", headers=account.headers)
        assert again.status_code == 200 and items(again)["api"]["r"] == 98  # the refused one spent nothing


async def test_a_decorator_around_the_guard_keeps_global_at_the_edge(edge_environ, database):
    """A decorator wrapping the guard may answer before the guard runs (a validator, say):
    the edge then checks `global` itself rather than leave it to a guard that never runs."""
    from functools import wraps

    from manas360.blueprints.guard import authenticated
    from manas360.errors import BadRequest
    from manas360.settings import load_settings

    bp = Blueprint("wrapped_guard")

    def refuse_first(handler):
        @wraps(handler)
        async def wrapper(request, *args, **kwargs):
            raise BadRequest()

        return wrapper

    @bp.get("/wrapped")
    @refuse_first
    @authenticated()
    async def wrapped(request):
        return json_response({})

    settings = load_settings(edge_environ(RATE_LIMIT_GLOBAL="2/3600"))
    async with running_app(settings, extra_blueprints=(bp,)) as app, client_for(app, client_ip=fresh_ip()) as client:
        statuses = [(await client.get("/wrapped")).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


# sliding window ---------------------------------------------------------------------------------


async def test_no_second_burst_right_after_a_window_edge(edge_app, redis_raw):
    limit = 10
    async with edge_app(RATE_LIMIT_GLOBAL=f"{limit}/1") as app, client_for(app, client_ip=fresh_ip()) as client:
        await _sleep_until_offset(redis_raw, offset_ms=700)
        first = [(await client.get("/probe/ping")).status_code for _ in range(limit)]
        await _sleep_until_offset(redis_raw, offset_ms=50)
        second = [(await client.get("/probe/ping")).status_code for _ in range(limit)]
        seconds, micros = await redis_raw.time()
    elapsed_ms = (seconds * 1000 + micros // 1000) % 1000
    assert first == [200] * limit
    # A fixed window would admit `limit` again here; the sliding estimate only hands back
    # the share of the previous window that has slid out.
    assert second.count(200) <= limit * elapsed_ms // 1000 < limit


async def _sleep_until_offset(redis, *, offset_ms: int, window_ms: int = 1000) -> None:
    seconds, micros = await redis.time()
    now = seconds * 1000 + micros // 1000
    await asyncio.sleep(((offset_ms - now % window_ms) % window_ms) / 1000)


# declarations are checked at start -----------------------------------------------------------------


@pytest.mark.parametrize("policy", ["no_such_policy", "global", "api"])
async def test_declaring_anything_but_a_per_route_policy_stops_the_start(edge_environ, database, policy):
    from manas360.settings import load_settings

    bp = Blueprint(f"bad_declaration_{policy}")

    @bp.get("/bad")
    @rate_limited(policy)
    async def bad(request):
        return json_response({})

    with pytest.raises(ValueError, match=policy):
        async with running_app(load_settings(edge_environ()), extra_blueprints=(bp,)):
            pass


def test_a_table_route_that_matches_no_route_is_reported(edge_environ):
    from types import SimpleNamespace

    from loguru import logger

    from manas360.edge.policies import PolicyMap
    from manas360.settings import load_settings

    policies = PolicyMap(load_settings(edge_environ()))  # lists POST /probe/register
    elsewhere = SimpleNamespace(path="probe/registr", methods={"POST"}, handler=lambda request: None)
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(message.record["message"]), level="WARNING")
    try:
        policies.check_routes([elsewhere])
    finally:
        logger.remove(sink)
    assert any("POST /probe/register" in message and "not a route" in message for message in messages)
