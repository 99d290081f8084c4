"""Login bookkeeping: login_attempts, the durable locks (the account-wide one in
user_accounts.locked_until, per source in account_source_locks) and login_sources (where
each account last completed a login from)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

RECORD_ATTEMPT_SQL = (
    'INSERT INTO "login_attempts" ("email", "user_id", "success", "reason", "ip", "user_agent") '
    "VALUES ($1, $2, $3, $4, $5, $6)"
)
SET_LOCKED_UNTIL_SQL = (
    'UPDATE "user_accounts" SET "locked_until" = clock_timestamp() + make_interval(secs => $2) WHERE "id" = $1'
)
CLEAR_LOCKED_UNTIL_SQL = (
    'UPDATE "user_accounts" SET "locked_until" = NULL, "mfa_failures" = 0, "updated_at" = now() WHERE "id" = $1 '
    'RETURNING "email"'
)
CLEAR_SOURCE_LOCKS_SQL = 'DELETE FROM "account_source_locks" WHERE "user_id" = $1'
SET_SOURCE_LOCK_SQL = """
    INSERT INTO "account_source_locks" ("user_id", "source", "locked_until")
    VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
    ON CONFLICT ("user_id", "source") DO UPDATE SET "locked_until" = EXCLUDED."locked_until\""""
SOURCE_LOCKS_SQL = """
    SELECT "source", "locked_until" FROM "account_source_locks"
    WHERE "user_id" = $1 AND "locked_until" > clock_timestamp() ORDER BY "locked_until" DESC, "source\""""
PRUNE_SOURCE_LOCKS_SQL = (
    'DELETE FROM "account_source_locks" WHERE "user_id" = $1 AND "locked_until" <= clock_timestamp()'
)
REMEMBER_SOURCE_SQL = """
    INSERT INTO "login_sources" ("user_id", "source") VALUES ($1, $2)
    ON CONFLICT ("user_id", "source") DO UPDATE SET "last_login_at" = clock_timestamp()"""


async def record_attempt(
    *, conn: BaseDBAsyncClient, email: str, user_id: str | None, success: bool, reason: str, ip: str, user_agent: str
) -> None:
    await conn.execute_query(RECORD_ATTEMPT_SQL, [email, user_id, success, reason, ip, user_agent])


async def set_locked_until(*, conn: BaseDBAsyncClient, user_id: str, duration_s: int) -> None:
    """Lock the account for `duration_s` from the database's clock now."""
    await conn.execute_query(SET_LOCKED_UNTIL_SQL, [user_id, duration_s])


async def clear_locked_until(*, conn: BaseDBAsyncClient, user_id: str) -> str:
    """Lift the account's lock; its email (the row exists: the caller holds its lock)."""
    rows = await conn.execute_query_dict(CLEAR_LOCKED_UNTIL_SQL, [user_id])
    email: str = rows[0]["email"]
    return email


async def set_source_lock(*, conn: BaseDBAsyncClient, user_id: str, source: str, duration_s: int) -> None:
    """Lock the account for one source for `duration_s` from the database's clock now (expired
    locks of the account are dropped on the way)."""
    await conn.execute_query(PRUNE_SOURCE_LOCKS_SQL, [user_id])
    await conn.execute_query(SET_SOURCE_LOCK_SQL, [user_id, source, duration_s])


async def clear_source_locks(*, conn: BaseDBAsyncClient, user_id: str) -> None:
    await conn.execute_query(CLEAR_SOURCE_LOCKS_SQL, [user_id])


class SourceLock(NamedTuple):
    source: str
    locked_until: datetime


async def source_locks(*, conn: BaseDBAsyncClient, user_id: str) -> list[SourceLock]:
    """The account's live per-source locks, the longest first."""
    rows = await conn.execute_query_dict(SOURCE_LOCKS_SQL, [user_id])
    return [SourceLock(row["source"], row["locked_until"]) for row in rows]


async def remember_source(*, conn: BaseDBAsyncClient, user_id: str, source: str) -> None:
    """The account completed a login from `source` now."""
    await conn.execute_query(REMEMBER_SOURCE_SQL, [user_id, source])
