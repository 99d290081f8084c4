"""Blocked requests, aggregated per (policy, key, window): rate_limit_logs."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

# Sorted rows give every worker the same lock order: concurrent flushes cannot deadlock.
UPSERT_SQL = """
INSERT INTO rate_limit_logs AS l (policy, key, window_start, blocked_count, first_blocked_at, last_blocked_at)
SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::timestamptz[], $4::int[], $5::timestamptz[],
                     $6::timestamptz[])
ON CONFLICT (policy, key, window_start) DO UPDATE
SET blocked_count = l.blocked_count + EXCLUDED.blocked_count,
    last_blocked_at = GREATEST(l.last_blocked_at, EXCLUDED.last_blocked_at)
"""


async def add_blocked(
    *,
    conn: BaseDBAsyncClient,
    policies: list[str],
    keys: list[str],
    window_starts: list[datetime],
    counts: list[int],
    first_at: list[datetime],
    last_at: list[datetime],
) -> None:
    """Insert or add to one row per slot (the columns are parallel lists, sorted by slot)."""
    await conn.execute_query(UPSERT_SQL, [policies, keys, window_starts, counts, first_at, last_at])
