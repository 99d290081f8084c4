"""DB_SLOW_QUERY_MS: a statement slower than the threshold is logged once as a WARNING with
its duration, text and request id, never its parameter values; a fast one is not logged."""

from __future__ import annotations

import asyncio
import json

import pytest
from loguru import logger
from sanic import Blueprint
from sanic.response import empty

from manas360.settings import load_settings
from manas360.slow_queries import SLOW_QUERY_LOGGER, statement_text
from tests.fixtures.app import client_for, running_app

EMAIL = "slow-query-secret@example.com"
HASH = "$2b$12$abcdefghijklmnopqrstuv"
SLOW = "SELECT pg_sleep($1), $2::text AS email"
FAST = "SELECT $1::text AS email"

probe = Blueprint("slow_query_probe")


@probe.get("/test/query/<speed:str>")
async def run_query(request, speed: str):
    """Test-only: one statement through the app's own pool, with a secret as a parameter."""
    sql, values = (SLOW, [0.1, EMAIL]) if speed == "slow" else (FAST, [EMAIL])
    await request.app.ctx.deps.db.connection.execute_query(sql, values)
    return empty()


async def _until(condition, *, timeout_s: float = 2.0) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), timeout_s)


@pytest.fixture
async def slow_app(ops_environ):
    settings = load_settings({**ops_environ, "DB_SLOW_QUERY_MS": "50"})
    async with running_app(settings, extra_blueprints=(probe,)) as app, client_for(app) as client:
        assert (await client.get("/test/query/fast")).status_code == 204  # pool and type introspection warmed
        records: list[dict] = []
        sink = logger.add(
            lambda message: records.append(message.record),
            level="WARNING",
            filter=lambda record: record["extra"].get("logger_name") == SLOW_QUERY_LOGGER,
        )
        try:
            yield client, records
        finally:
            logger.remove(sink)


async def test_slow_statement_is_logged_once_with_request_id_and_without_values(slow_app):
    client, records = slow_app
    response = await client.get("/test/query/slow", headers={"X-Request-ID": "req-slow-1"})
    assert response.status_code == 204
    await _until(lambda: records)
    [record] = records
    assert record["level"].name == "WARNING"
    assert record["extra"]["request_id"] == "req-slow-1"
    assert record["extra"]["statement"] == SLOW
    assert 100 <= record["extra"]["duration_ms"] < 2000
    assert set(record["extra"]) == {"logger_name", "request_id", "duration_ms", "statement", "failed"}
    assert EMAIL not in record["message"] + json.dumps(record["extra"], default=str)


async def test_fast_statement_is_not_logged(slow_app):
    client, records = slow_app
    responses = [await client.get("/test/query/fast") for _ in range(3)]
    slow = await client.get("/test/query/slow", headers={"X-Request-ID": "req-slow-2"})
    assert [r.status_code for r in responses] == [204] * 3 and slow.status_code == 204
    await _until(lambda: records)  # the slow one, scheduled after every fast one
    assert [record["extra"]["request_id"] for record in records] == ["req-slow-2"]


async def test_off_installs_no_query_logger(ops_environ):
    settings = load_settings({**ops_environ, "DB_SLOW_QUERY_MS": "0"})
    async with running_app(settings) as app:
        async with app.ctx.deps.db.connection.acquire_connection() as connection:
            assert not connection._con._query_loggers


def test_statement_text_blanks_literals_and_is_bounded():
    assert statement_text(query=f"SELECT id FROM users\n  WHERE email = '{EMAIL}' AND h = 'it''s {HASH}'") == (
        "SELECT id FROM users WHERE email = '…' AND h = '…'"
    )
    assert len(statement_text(query="SELECT " + "x, " * 500)) == 201
