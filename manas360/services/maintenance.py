"""Maintenance jobs for cron or pg_cron (`manas360 maintenance <job>`).

Every job is idempotent (a second run finds nothing to do) and returns what it did as
counts. Jobs that can touch many rows work in short batches, each its own transaction,
so no lock is held for long and an interrupted run keeps the batches it finished.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from manas360 import db
from manas360.settings import Settings

JOBS = ("cleanup-tokens", "archive-audit", "prune-login-attempts", "refresh-views")  # the order of `all`
DEFAULT_AUDIT_DAYS = 90
DEFAULT_LOGIN_ATTEMPT_DAYS = 30
DEFAULT_BATCH_SIZE = 5000
VIEWS = ("mv_users_with_subscription", "mv_user_permissions", "mv_user_features")

OnBatch = Callable[[int, int], None]  # (rows in this batch, rows so far)


@dataclass(slots=True)
class JobResult:
    job: str
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    elapsed_s: float = 0.0
    skipped: bool = False  # another run of the same job holds its lock


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection for maintenance work, closed at exit."""
    # No statement timeout: refresh_materialized_views() and cleanup_expired_tokens() are
    # single statements that legitimately run long on big tables, and the batched jobs are
    # short by construction. The API's timeout protects request latency, not cron jobs.
    conn = await db.connect(settings, server_settings={
        "application_name": "manas360-maintenance", "statement_timeout": "0"})
    try:
        yield conn
    finally:
        await conn.close(timeout=5)


async def run_job(*, conn: asyncpg.Connection, job: str, audit_days: int = DEFAULT_AUDIT_DAYS,
                  login_attempt_days: int = DEFAULT_LOGIN_ATTEMPT_DAYS, batch_size: int = DEFAULT_BATCH_SIZE,
                  on_batch: OnBatch | None = None) -> JobResult:
    """Run one job by its command-line name, unless another run of it holds its lock."""
    started = time.monotonic()
    # Cron can start a job while the previous run of it is still going (a slow refresh on
    # a big table): the second one steps aside rather than queueing behind the first.
    key = f"manas360.maintenance.{job}"
    if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
        return JobResult(job=job, skipped=True)
    try:
        if job == "refresh-views":
            result = await refresh_views(conn=conn)
        elif job == "cleanup-tokens":
            result = await cleanup_tokens(conn=conn)
        elif job == "archive-audit":
            result = await archive_audit(conn=conn, days=audit_days, batch_size=batch_size, on_batch=on_batch)
        elif job == "prune-login-attempts":
            result = await prune_login_attempts(conn=conn, days=login_attempt_days, batch_size=batch_size,
                                                on_batch=on_batch)
        else:
            raise ValueError(f"unknown maintenance job {job!r}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
    result.elapsed_s = time.monotonic() - started
    return result


async def refresh_views(*, conn: asyncpg.Connection) -> JobResult:
    """REFRESH MATERIALIZED VIEW CONCURRENTLY, each view (readers are never blocked)."""
    await conn.execute("SELECT refresh_materialized_views()")
    counts = {f"{view} rows": await conn.fetchval(f'SELECT count(*) FROM "{view}"') for view in VIEWS}
    return JobResult(job="refresh-views", counts=counts, batches=1)


async def cleanup_tokens(*, conn: asyncpg.Connection) -> JobResult:
    """Delete expired refresh tokens, expired sessions left without tokens, expired revoked jtis."""
    row = await conn.fetchrow("SELECT * FROM cleanup_expired_tokens()")
    counts = {"expired refresh tokens deleted": row["refresh_tokens"],
              "expired sessions deleted": row["sessions"],
              "expired revoked-jti rows deleted": row["revoked_access_tokens"]}
    return JobResult(job="cleanup-tokens", counts=counts, batches=1)


async def archive_audit(*, conn: asyncpg.Connection, days: int = DEFAULT_AUDIT_DAYS,
                        batch_size: int = DEFAULT_BATCH_SIZE, on_batch: OnBatch | None = None) -> JobResult:
    """Move audit rows older than `days` to audit_logs_archive, `batch_size` rows per transaction."""
    _check(days=days, batch_size=batch_size)

    async def step() -> int:
        return await conn.fetchval("SELECT cleanup_old_audit_logs($1, $2)", days, batch_size)

    moved, batches = await _in_batches(step, on_batch)
    return JobResult(job="archive-audit", counts={f"audit rows older than {days} days archived": moved},
                     batches=batches)


async def prune_login_attempts(*, conn: asyncpg.Connection, days: int = DEFAULT_LOGIN_ATTEMPT_DAYS,
                               batch_size: int = DEFAULT_BATCH_SIZE, on_batch: OnBatch | None = None) -> JobResult:
    """Delete login attempts older than `days`, `batch_size` rows per transaction."""
    _check(days=days, batch_size=batch_size)
    # The cutoff is fixed once, so the loop ends even while new attempts keep arriving.
    cutoff: datetime = await conn.fetchval("SELECT now() - make_interval(days => $1)", days)

    async def step() -> int:
        status = await conn.execute(
            'WITH doomed AS (SELECT "id" FROM "login_attempts" WHERE "created_at" < $1 '
            'ORDER BY "created_at" LIMIT $2 FOR UPDATE SKIP LOCKED) '
            'DELETE FROM "login_attempts" l USING doomed d WHERE l."id" = d."id"', cutoff, batch_size)
        return int(status.rsplit(" ", 1)[-1])  # "DELETE <n>"

    deleted, batches = await _in_batches(step, on_batch)
    return JobResult(job="prune-login-attempts", counts={f"login attempts older than {days} days deleted": deleted},
                     batches=batches)


async def _in_batches(step: Callable[[], Awaitable[int]], on_batch: OnBatch | None) -> tuple[int, int]:
    """Run `step` (one short transaction, returns rows done) until it does nothing."""
    total = batches = 0
    while n := await step():
        total += n
        batches += 1
        if on_batch is not None:
            on_batch(n, total)
    return total, batches


def _check(*, days: int, batch_size: int) -> None:
    if days < 0 or batch_size < 1:
        raise ValueError("days must be >= 0 and batch_size >= 1")
