"""Health endpoints query both stores for real; an unreachable one is a 503 naming it."""

from __future__ import annotations

import pytest

from manas360.settings import load_settings
from tests.fixtures.app import client_for, running_app


async def test_live_ready_and_report_when_everything_answers(client):
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["database"] == "ok" and ready.json()["redis"] == "ok"
    report = (await client.get("/health")).json()
    assert report["status"] == "ok"
    assert report["pool"]["database"]["max"] == 20
    assert report["memory"]["rss_bytes"] > 0 and report["uptime_s"] >= 0
    assert report["version"]


@pytest.mark.parametrize("override, component", [
    ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "redis"),
    ({"DATABASE_URL": "postgres://root@127.0.0.1:1/nowhere"}, "database"),
])
async def test_unreachable_store_is_503_naming_the_component(environ, database, override, component):
    settings = load_settings({**environ, **override})
    async with running_app(settings) as app, client_for(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        for path in ("/health/ready", "/health"):
            response = await client.get(path)
            assert response.status_code == 503
            body = response.json()
            assert body["error"] == "ServiceUnavailable" and body["component"] == component
            assert body[component] != "ok"
            assert int(response.headers["retry-after"]) > 0
            other = "database" if component == "redis" else "redis"
            assert body[other] == "ok"
