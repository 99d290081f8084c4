"""PostgreSQL's clock: the one time source for validity (no table)."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

NOW_SQL = "SELECT clock_timestamp() AS now"


async def fetch_now(*, conn: BaseDBAsyncClient) -> datetime:
    """clock_timestamp(): the wall clock now, not the transaction's start."""
    rows = await conn.execute_query_dict(NOW_SQL)
    now: datetime = rows[0]["now"]  # asyncpg decodes a timestamptz as an aware datetime
    return now
