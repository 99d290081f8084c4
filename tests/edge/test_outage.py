"""Redis failing during a rate-limit check: public requests go through (logged, counted);
a fail-closed policy (the shipped `auth`) and the per-user seam answer 503."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tests.edge.conftest import fresh_ip
from tests.fixtures.app import client_for

CLOSED_PORT = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
async def app(edge_app):
    async with edge_app(REDIS_URL=CLOSED_PORT, RATE_LIMIT_GLOBAL="1/3600") as app:
        yield app


async def test_a_public_request_is_allowed_and_counted_when_redis_is_down(app):
    before = _fail_open_count()
    async with client_for(app, client_ip=fresh_ip()) as client:
        responses = [await client.get("/probe/ping") for _ in range(3)]  # the limit is 1
    assert [r.status_code for r in responses] == [200] * 3
    assert all("ratelimit" not in r.headers for r in responses)
    assert _fail_open_count() - before == 3


def _fail_open_count() -> float:
    return REGISTRY.get_sample_value("manas360_rate_limit_fail_open_total") or 0.0


async def test_the_auth_policy_fails_closed(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        response = await client.post("/probe/login")
    assert response.status_code == 503
    assert response.json()["error"] == "ServiceUnavailable" and response.json()["retry_after"] >= 1


async def test_the_per_user_policy_fails_closed(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        response = await client.get("/probe/users/someone")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "ServiceUnavailable" and body["retry_after"] >= 1
    assert response.headers["retry-after"] == str(body["retry_after"])


async def test_a_route_policy_marked_fail_open_lets_requests_through(edge_environ, database, tmp_path):
    from manas360.settings import load_settings
    from tests.edge.conftest import POLICY_TABLE
    from tests.edge.probes import probe_blueprint
    from tests.fixtures.app import running_app

    table = tmp_path / "open.toml"
    table.write_text(POLICY_TABLE.replace("fail_open = false\n", "fail_open = true\n"))
    settings = load_settings(edge_environ(REDIS_URL=CLOSED_PORT, RATE_LIMITS_FILE=str(table)))
    async with (
        running_app(settings, extra_blueprints=(probe_blueprint(),)) as app,
        client_for(app, client_ip=fresh_ip()) as client,
    ):
        assert (await client.post("/probe/login")).status_code == 200
