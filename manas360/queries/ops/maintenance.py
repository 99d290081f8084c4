"""Maintenance jobs on a raw asyncpg connection: job locks, the statement timeout, the
cleanup functions the migrations define, and batched deletes of old rows."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import asyncpg

TRY_JOB_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext($1))"
RELEASE_JOB_LOCK_SQL = "SELECT pg_advisory_unlock(hashtext($1))"
SET_STATEMENT_TIMEOUT_SQL = "SELECT set_config('statement_timeout', $1, false)"
REFRESH_VIEWS_SQL = "SELECT refresh_materialized_views()"
COUNT_ROWS_SQL = 'SELECT count(*) FROM "{table}"'
CLEANUP_TOKENS_SQL = "SELECT * FROM cleanup_expired_tokens($1)"
ARCHIVE_AUDIT_SQL = "SELECT cleanup_old_audit_logs($1, $2)"
CUTOFF_SQL = "SELECT now() - make_interval(days => $1)"
DELETE_OLDER_SQL = (
    'WITH doomed AS (SELECT "id" FROM "{table}" WHERE "{column}" < $1 '
    'ORDER BY "{column}" LIMIT $2 FOR UPDATE SKIP LOCKED) '
    'DELETE FROM "{table}" t USING doomed d WHERE t."id" = d."id"'
)


async def try_job_lock(*, conn: asyncpg.Connection, key: str) -> bool:
    """Take the session-level advisory lock `key` if free; False when another run holds it."""
    return bool(await conn.fetchval(TRY_JOB_LOCK_SQL, key))


async def release_job_lock(*, conn: asyncpg.Connection, key: str) -> None:
    await conn.execute(RELEASE_JOB_LOCK_SQL, key)


async def set_statement_timeout(*, conn: asyncpg.Connection, timeout_ms: int) -> None:
    """The session's statement timeout (0: none)."""
    await conn.execute(SET_STATEMENT_TIMEOUT_SQL, str(timeout_ms))


async def refresh_materialized_views(*, conn: asyncpg.Connection) -> None:
    """REFRESH MATERIALIZED VIEW CONCURRENTLY of every view (the migrations' function)."""
    await conn.execute(REFRESH_VIEWS_SQL)


async def count_rows(*, conn: asyncpg.Connection, table: str) -> int:
    """count(*) of a table or view (a name of ours, never user input)."""
    n: int = await conn.fetchval(COUNT_ROWS_SQL.format(table=table))  # asyncpg: untyped
    return n


class Cleaned(NamedTuple):
    refresh_tokens: int
    sessions: int
    revoked_access_tokens: int


async def cleanup_expired_tokens(*, conn: asyncpg.Connection, batch_size: int) -> Cleaned:
    """One batch: (refresh_tokens, sessions, revoked_access_tokens) deleted."""
    row = await conn.fetchrow(CLEANUP_TOKENS_SQL, batch_size)
    return Cleaned(**dict(row))


async def archive_audit(*, conn: asyncpg.Connection, days: int, batch_size: int) -> int:
    """One batch of audit rows older than `days` moved to audit_logs_archive; how many."""
    moved: int = await conn.fetchval(ARCHIVE_AUDIT_SQL, days, batch_size)  # asyncpg: untyped
    return moved


async def cutoff(*, conn: asyncpg.Connection, days: int) -> datetime:
    """now() minus `days`, by the database's clock."""
    moment: datetime = await conn.fetchval(CUTOFF_SQL, days)
    return moment


async def delete_older(*, conn: asyncpg.Connection, table: str, column: str, before: datetime, batch_size: int) -> int:
    """Delete at most `batch_size` rows of `table` whose `column` is before `before` (oldest
    first, skipping locked rows); how many. `table` and `column` are names of ours."""
    status = await conn.execute(DELETE_OLDER_SQL.format(table=table, column=column), before, batch_size)
    return int(status.rsplit(" ", 1)[-1])  # "DELETE <n>"


# Waiting mails whose link died (used, voided by a security event or a newer link, expired,
# or its token pruned): discarded in batches, their sealed bodies dropped.
DISCARD_DEAD_LINKS_SQL = """
    WITH doomed AS (
        SELECT o."id" FROM "outbox" o
        WHERE o."carries_token" AND o."sent_at" IS NULL AND o."discarded_at" IS NULL AND o."dead_at" IS NULL
          AND NOT EXISTS (
            SELECT 1 FROM "account_tokens" t JOIN "user_accounts" u ON u."id" = t."user_id"
            WHERE t."id" = o."token_id" AND t."used_at" IS NULL AND t."expires_at" > clock_timestamp()
              AND (u."credential_epoch" IS NULL OR t."created_at" > u."credential_epoch"))
        LIMIT $1 FOR UPDATE SKIP LOCKED)
    UPDATE "outbox" o SET "discarded_at" = clock_timestamp(), "body" = NULL, "payload_sealed" = NULL
    FROM doomed WHERE o."id" = doomed."id\""""


async def discard_dead_links(*, conn: asyncpg.Connection, batch_size: int) -> int:
    """One batch of DISCARD_DEAD_LINKS_SQL; how many mails it discarded."""
    status = await conn.execute(DISCARD_DEAD_LINKS_SQL, batch_size)
    return int(status.rsplit(" ", 1)[-1])  # "UPDATE <n>"
