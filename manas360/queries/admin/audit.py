"""The audit trail: audit_logs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

INSERT_ENTRY_SQL = (
    'INSERT INTO "audit_logs" ("actor_id", "target_user_id", "action", "before", "after", "ip", "request_id") '
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
LIST_ENTRIES_SQL = (
    'SELECT "id", "actor_id", "target_user_id", "action", "before", "after", "ip", "request_id", "created_at" '
    'FROM "audit_logs" WHERE {where} ORDER BY "id" DESC LIMIT {limit}'
)


async def insert_entry(
    *,
    conn: BaseDBAsyncClient,
    actor_id: str | None,
    target_user_id: str | None,
    action: str,
    before: str | None,
    after: str | None,
    ip: str,
    request_id: str,
) -> None:
    """Append one entry (`before`/`after` as JSON text)."""
    await conn.execute_query(INSERT_ENTRY_SQL, [actor_id, target_user_id, action, before, after, ip, request_id])


class Entry(NamedTuple):
    id: int
    actor_id: uuid.UUID | None
    target_user_id: uuid.UUID | None
    action: str
    before: str | None
    after: str | None
    ip: str
    request_id: str
    created_at: datetime


async def list_entries(
    *, conn: BaseDBAsyncClient, before_id: int | None, target_user_id: str | None, action: str | None, limit: int
) -> list[Entry]:
    """Entries newest first (id below `before_id`, for one target and/or action when given)."""
    filters: list[str] = []
    values: list[int | str] = []
    if before_id is not None:
        values.append(before_id)
        filters.append(f'"id" < ${len(values)}')
    if target_user_id:
        values.append(target_user_id)
        filters.append(f'"target_user_id" = ${len(values)}')
    if action:
        values.append(action)
        filters.append(f'"action" = ${len(values)}')
    where = " AND ".join(filters) or "TRUE"
    rows = await conn.execute_query_dict(LIST_ENTRIES_SQL.format(where=where, limit=int(limit)), values)
    return [Entry(**row) for row in rows]
