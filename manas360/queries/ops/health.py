"""Readiness: the cheapest statement PostgreSQL must answer (no table)."""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient

PING_SQL = "SELECT 1"


async def ping(*, conn: BaseDBAsyncClient) -> None:
    await conn.execute_query(PING_SQL)
