"""Blocked requests land in rate_limit_logs aggregated: one row per (policy, key, window)
with a counter, written by periodic upserts, surviving PostgreSQL failures."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from manas360.db import Database
from manas360.edge import flush_block_log
from manas360.edge.blocklog import BlockLog
from manas360.settings import load_settings
from tests.edge.conftest import fresh_ip
from tests.fixtures.app import client_for

LIMIT, WINDOW = 2, 3600


@pytest.fixture(scope="module")
async def app(edge_app):
    async with edge_app(RATE_LIMIT_GLOBAL=f"{LIMIT}/{WINDOW}", RATE_LIMIT_AUTH=f"1/{WINDOW}") as app:
        yield app


async def _rows(app, key: str) -> list[SimpleNamespace]:
    rows = await app.ctx.deps.db.connection.execute_query_dict(
        "SELECT * FROM rate_limit_logs WHERE key = $1 ORDER BY policy", [key]
    )
    return [SimpleNamespace(**row) for row in rows]


async def test_blocked_requests_become_one_row_with_a_counter(app):
    address = fresh_ip()
    async with client_for(app, client_ip=address) as client:
        statuses = [(await client.get("/probe/ping")).status_code for _ in range(LIMIT + 7)]
        assert statuses.count(429) == 7
        assert await flush_block_log(app) == 1
        [row] = await _rows(app, f"ip:{address}")
        assert (row.policy, row.blocked_count) == ("global", 7)
        now = datetime.now(UTC).timestamp()
        assert row.window_start.timestamp() == now - now % WINDOW
        assert row.first_blocked_at <= row.last_blocked_at

        for _ in range(3):
            await client.get("/probe/ping")
        assert await flush_block_log(app) == 1
    [row] = await _rows(app, f"ip:{address}")
    assert row.blocked_count == 10  # the same row, incremented


async def test_each_policy_and_route_key_gets_its_own_row(app):
    address = fresh_ip()
    async with client_for(app, client_ip=address) as client:
        for path in ("/probe/login", "/probe/login", "/probe/login"):
            await client.post(path)  # auth admits 1; global (2) refuses the third
    await flush_block_log(app)
    rows = await _rows(app, f"ip:{address} POST /probe/login") + await _rows(app, f"ip:{address}")
    assert sorted((r.policy, r.key, r.blocked_count) for r in rows) == [
        ("auth", f"ip:{address} POST /probe/login", 1),
        ("global", f"ip:{address}", 1),
    ]


async def test_nothing_to_flush_writes_nothing(app):
    await flush_block_log(app)
    assert await flush_block_log(app) == 0


async def test_a_failed_flush_keeps_the_counts_for_the_next_one(app, environ):
    log = BlockLog()
    key = f"ip:{fresh_ip()}"
    for _ in range(4):
        log.record(policy="global", key=key, window_s=WINDOW)
    dead = Database(load_settings({**environ, "DATABASE_URL": "postgres://root@127.0.0.1:1/nowhere"}))
    await dead.open()
    try:
        assert await log.flush(db=dead) == 0  # connection refused
    finally:
        await dead.close()
    assert log.pending == 1
    assert await log.flush(db=app.ctx.deps.db) == 1
    [row] = await _rows(app, key)
    assert row.blocked_count == 4


def test_the_buffer_is_bounded():
    log = BlockLog(max_keys=2)
    for key in ("ip:a", "ip:b", "ip:c", "ip:c", "ip:a"):
        log.record(policy="global", key=key, window_s=60, now=1_000_000.0)
    assert log.pending == 2


async def test_the_stop_listener_flushes_what_is_left(edge_app, app):
    address = fresh_ip()
    async with (
        edge_app(RATE_LIMIT_GLOBAL=f"1/{WINDOW}") as short_lived,
        client_for(short_lived, client_ip=address) as client,
    ):
        for _ in range(3):
            await client.get("/probe/ping")
    [row] = await _rows(app, f"ip:{address}")
    assert row.blocked_count == 2
