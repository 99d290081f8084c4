"""Login bookkeeping: login_attempts, and the lock written to user_accounts.locked_until."""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient

RECORD_ATTEMPT_SQL = (
    'INSERT INTO "login_attempts" ("email", "user_id", "success", "reason", "ip", "user_agent") '
    'VALUES ($1, $2, $3, $4, $5, $6)')
SET_LOCKED_UNTIL_SQL = (
    'UPDATE "user_accounts" SET "locked_until" = clock_timestamp() + make_interval(secs => $2) '
    'WHERE "id" = $1')
CLEAR_LOCKED_UNTIL_SQL = (
    'UPDATE "user_accounts" SET "locked_until" = NULL, "updated_at" = now() WHERE "id" = $1 '
    'RETURNING "email"')


async def record_attempt(*, conn: BaseDBAsyncClient, email: str, user_id: str | None, success: bool, reason: str,
                         ip: str, user_agent: str) -> None:
    await conn.execute_query(RECORD_ATTEMPT_SQL, [email, user_id, success, reason, ip, user_agent])


async def set_locked_until(*, conn: BaseDBAsyncClient, user_id: str, duration_s: int) -> None:
    """Lock the account for `duration_s` from the database's clock now."""
    await conn.execute_query(SET_LOCKED_UNTIL_SQL, [user_id, duration_s])


async def clear_locked_until(*, conn: BaseDBAsyncClient, user_id: str) -> str:
    """Lift the account's lock; its email (the row exists: the caller holds its lock)."""
    rows = await conn.execute_query_dict(CLEAR_LOCKED_UNTIL_SQL, [user_id])
    email: str = rows[0]["email"]
    return email
