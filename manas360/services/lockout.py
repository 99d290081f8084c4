"""Account lockout: LOCKOUT_THRESHOLD failed logins for one email within LOCKOUT_WINDOW_S
lock it for LOCKOUT_DURATION_S.

Algorithm: a sliding window of failure times per email in Redis (one atomic script counts
and, at the threshold, sets the lock, so concurrent failures lock at exactly the
threshold). Attempts while locked are answered 423 and not counted, so hammering does not
extend the lock. A successful login does not clear the count: only the window or an
administrator does. Unknown emails are counted and answered exactly like known ones.

Durability: a known account's lock is also written to `user_accounts.locked_until`, and
both are checked, so a Redis flush does not unlock it. (An unknown email's lock lives in
Redis only: after a flush it restarts from zero, the one case where known and unknown
emails can be told apart.)
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from types import SimpleNamespace

from tortoise import connections
from tortoise.transactions import in_transaction

from manas360.errors import NotFound
from manas360.services import audit
from manas360.services.clock import utcnow
from store import lockout as lockout_store
from store.lockout import FailureVerdict


async def seconds_locked(ctx: SimpleNamespace, *, email: str, locked_until: datetime | None) -> int:
    """Whole seconds until the email may try again (Redis lock or PostgreSQL lock); 0 = not locked."""
    redis_ms = await lockout_store.lock_remaining_ms(ctx.store, email=email)
    database_ms = (locked_until - utcnow()).total_seconds() * 1000 if locked_until else 0
    return math.ceil(max(redis_ms, database_ms, 0) / 1000)


async def count_failure(ctx: SimpleNamespace, *, email: str) -> FailureVerdict:
    """Count one failed login for the email (atomic; may set the lock)."""
    settings = ctx.settings
    return await lockout_store.record_failure(
        ctx.store, email=email, threshold=settings.lockout_threshold, window_s=settings.lockout_window_s,
        lock_s=settings.lockout_duration_s)


def locked_until(ctx: SimpleNamespace, *, now: datetime) -> datetime:
    return now + timedelta(seconds=ctx.settings.lockout_duration_s)


async def unlock_account(ctx: SimpleNamespace, *, user_id: str, actor_id: str | None = None, ip: str = "") -> None:
    """Lift an account's lock at once (PostgreSQL and Redis) and clear its failure count."""
    async with in_transaction() as conn:
        rows = await conn.execute_query_dict(
            'UPDATE "user_accounts" SET "locked_until" = NULL, "updated_at" = now() '
            'WHERE "id" = $1 AND "deleted_at" IS NULL RETURNING "email"', [user_id])
        if not rows:
            raise NotFound()
        await audit.record(conn, action=audit.ACCOUNT_UNLOCKED, actor_id=actor_id, target_user_id=user_id, ip=ip)
    await lockout_store.clear(ctx.store, email=rows[0]["email"])


async def set_database_lock(*, user_id: str, until: datetime, conn=None) -> None:
    await (conn or connections.get("default")).execute_query(
        'UPDATE "user_accounts" SET "locked_until" = $2 WHERE "id" = $1', [user_id, until])
