"""Health endpoints query both stores for real; an unreachable one is a 503 naming it. Each
worker reuses a result for about a second and runs one check at a time, so a flood of
probes cannot drain the pools."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

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


@pytest.mark.parametrize(
    "override, component",
    [
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "redis"),
        ({"DATABASE_URL": "postgres://root@127.0.0.1:1/nowhere"}, "database"),
    ],
)
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
            if path == "/health":
                assert set(body["latency_ms"]) == {"database", "redis"}
            assert int(response.headers["retry-after"]) > 0
            other = "database" if component == "redis" else "redis"
            assert body[other] == "ok"


async def test_report_gives_the_latency_of_each_check_behind_its_result(client):
    report = (await client.get("/health")).json()
    assert set(report["latency_ms"]) == {"database", "redis"}
    assert all(0 < latency < 2000 for latency in report["latency_ms"].values())
    assert {"status", "database", "redis", "pool", "uptime_s", "memory", "version", "pid"} < set(report)
    ready = (await client.get("/health/ready")).json()
    assert ready == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_a_reused_result_keeps_the_latency_of_the_check_that_produced_it(app, db):
    from manas360.services.ops.health import ReadinessCache

    cache = ReadinessCache(ttl_s=60)
    first = await cache.get_timed(db=app.ctx.deps.db, store=app.ctx.deps.store)
    assert first[0] == {"database": "ok", "redis": "ok"}
    assert await cache.get_timed(db=app.ctx.deps.db, store=app.ctx.deps.store) == first


# flood protection -------------------------------------------------------------------------


def _count_checks(monkeypatch) -> dict[str, int]:
    """Count every real check of each store made by the readiness endpoints."""
    from manas360.services.ops import health

    calls = {"database": 0, "redis": 0}

    def counted(name, original):
        async def check(*args, **kwargs):
            calls[name] += 1
            return await original(*args, **kwargs)

        return check

    monkeypatch.setattr(health, "check_database", counted("database", health.check_database))
    monkeypatch.setattr(health, "check_redis", counted("redis", health.check_redis))
    return calls


async def test_a_flood_of_health_calls_queries_each_store_once(environ, database, monkeypatch):
    calls = _count_checks(monkeypatch)
    async with running_app(load_settings(environ)) as app, client_for(app) as client:
        responses = await asyncio.gather(
            *(client.get("/health/ready") for _ in range(50)), *(client.get("/health") for _ in range(10))
        )
    assert [response.status_code for response in responses] == [200] * 60
    assert calls == {"database": 1, "redis": 1}


async def test_a_store_going_down_is_reported_within_two_seconds(environ, database, monkeypatch):
    from manas360.services.ops.health import READINESS_TTL_S
    from manas360.store import close_store, open_store

    calls = _count_checks(monkeypatch)
    async with running_app(load_settings(environ)) as app, client_for(app) as client:
        assert (await client.get("/health/ready")).status_code == 200
        healthy = app.ctx.deps
        dead = open_store(url="redis://127.0.0.1:1/0", prefix="dead:")
        app.ctx.deps = replace(healthy, store=dead)  # Redis "goes away" for this worker
        went_down = time.monotonic()
        try:
            while (response := await client.get("/health/ready")).status_code == 200:
                assert time.monotonic() - went_down < READINESS_TTL_S + 1, "still 'ok' after the cache expired"
                await asyncio.sleep(0.05)
        finally:
            app.ctx.deps = healthy
            await close_store(dead)
        assert response.status_code == 503 and response.json()["component"] == "redis"
        assert time.monotonic() - went_down < READINESS_TTL_S + 1
    assert calls["redis"] == 2  # the polling in between was answered from the cache


async def test_readiness_is_503_never_500_while_the_database_is_not_set_up(environ, database):
    """A worker whose database is not opened (as before its start-up listener has opened it):
    getting the connection itself fails, which used to escape the check as a 500."""
    from manas360.db import Database

    settings = load_settings(environ)
    async with running_app(settings) as app, client_for(app) as client:
        opened = app.ctx.deps.db
        object.__setattr__(app.ctx.deps, "db", Database(settings))  # built, opened by nobody
        try:
            response = await client.get("/health/ready")
        finally:
            object.__setattr__(app.ctx.deps, "db", opened)
    assert response.status_code == 503, response.text
    assert response.json()["component"] == "database" and response.json()["database"].startswith("error")
