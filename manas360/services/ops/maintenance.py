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

import asyncpg

from manas360 import db
from manas360.queries.ops import maintenance as maintenance_queries
from manas360.settings import Settings
from manas360.store import Store

JOBS = (
    "cleanup-tokens",
    "archive-audit",
    "prune-login-attempts",
    "prune-rate-limit-logs",
    "prune-mail",
    "prune-account-tokens",
    "purge-deleted",
    "refresh-views",
)  # the order of `all`
DEFAULT_AUDIT_DAYS = 90
DEFAULT_LOGIN_ATTEMPT_DAYS = 30
DEFAULT_RATE_LIMIT_LOG_DAYS = 14
DEFAULT_MAIL_DAYS = 30
DEFAULT_ACCOUNT_TOKEN_DAYS = 7
DEFAULT_BATCH_SIZE = 5000
BATCH_STATEMENT_TIMEOUT_MS = 30_000
"""Longest one batch may run: a batch that cannot finish in this (a lock it waits for, a
plan gone wrong) fails the job loudly instead of holding rows for minutes."""
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
    # run_job sets the statement timeout per job: bounded for the batched ones, none for
    # the concurrent view refresh (one statement that legitimately runs long).
    conn = await db.connect(
        settings, server_settings={"application_name": "manas360-maintenance", "statement_timeout": "0"}
    )
    try:
        yield conn
    finally:
        await conn.close(timeout=5)


async def run_job(
    *,
    conn: asyncpg.Connection,
    job: str,
    audit_days: int = DEFAULT_AUDIT_DAYS,
    login_attempt_days: int = DEFAULT_LOGIN_ATTEMPT_DAYS,
    rate_limit_log_days: int = DEFAULT_RATE_LIMIT_LOG_DAYS,
    mail_days: int = DEFAULT_MAIL_DAYS,
    account_token_days: int = DEFAULT_ACCOUNT_TOKEN_DAYS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
    settings: Settings | None = None,
    store: Store | None = None,
) -> JobResult:
    """Run one job by its command-line name, unless another run of it holds its lock.
    `purge-deleted` and `replay-erasures` need `settings` (and `store`, to erase Redis keys)."""
    started = time.monotonic()
    # Cron can start a job while the previous run of it is still going (a slow refresh on
    # a big table): the second one steps aside rather than queueing behind the first.
    key = f"manas360.maintenance.{job}"
    if not await maintenance_queries.try_job_lock(conn=conn, key=key):
        return JobResult(job=job, skipped=True)
    try:
        # Batched jobs bound every statement; a concurrent view refresh is one long statement.
        timeout_ms = 0 if job == "refresh-views" else BATCH_STATEMENT_TIMEOUT_MS
        await maintenance_queries.set_statement_timeout(conn=conn, timeout_ms=timeout_ms)
        if job == "refresh-views":
            result = await refresh_views(conn=conn)
        elif job == "cleanup-tokens":
            result = await cleanup_tokens(conn=conn, batch_size=batch_size, on_batch=on_batch)
        elif job == "archive-audit":
            result = await archive_audit(conn=conn, days=audit_days, batch_size=batch_size, on_batch=on_batch)
        elif job == "prune-login-attempts":
            result = await prune_login_attempts(
                conn=conn, days=login_attempt_days, batch_size=batch_size, on_batch=on_batch
            )
        elif job == "prune-rate-limit-logs":
            result = await prune_rate_limit_logs(
                conn=conn, days=rate_limit_log_days, batch_size=batch_size, on_batch=on_batch
            )
        elif job == "prune-mail":
            result = await prune_mail(conn=conn, days=mail_days, batch_size=batch_size, on_batch=on_batch)
        elif job in ("purge-deleted", "replay-erasures"):
            from manas360.services.ops import purge  # it builds on this module's JobResult

            if settings is None:
                raise ValueError(f"maintenance {job} needs the settings")
            run = purge.purge_deleted if job == "purge-deleted" else purge.replay_erasures
            result = await run(
                conn=conn,
                settings=settings,
                store=store,
                batch_size=purge.DEFAULT_BATCH_SIZE if batch_size == DEFAULT_BATCH_SIZE else batch_size,
                on_batch=on_batch,
            )
        elif job == "prune-account-tokens":
            result = await prune_account_tokens(
                conn=conn, days=account_token_days, batch_size=batch_size, on_batch=on_batch
            )
        else:
            raise ValueError(f"unknown maintenance job {job!r}")
    finally:
        await maintenance_queries.release_job_lock(conn=conn, key=key)
    result.elapsed_s = time.monotonic() - started
    return result


async def refresh_views(*, conn: asyncpg.Connection) -> JobResult:
    """REFRESH MATERIALIZED VIEW CONCURRENTLY, each view (readers are never blocked)."""
    await maintenance_queries.refresh_materialized_views(conn=conn)
    counts = {f"{view} rows": await maintenance_queries.count_rows(conn=conn, table=view) for view in VIEWS}
    return JobResult(job="refresh-views", counts=counts, batches=1)


async def cleanup_tokens(
    *, conn: asyncpg.Connection, batch_size: int = DEFAULT_BATCH_SIZE, on_batch: OnBatch | None = None
) -> JobResult:
    """Delete expired refresh tokens, expired sessions (with their tokens) and expired
    revoked-jti rows, at most `batch_size` of each per transaction, until none is left."""
    _check(days=0, batch_size=batch_size)
    counts = {"expired refresh tokens deleted": 0, "expired sessions deleted": 0, "expired revoked-jti rows deleted": 0}

    async def step() -> int:
        row = await maintenance_queries.cleanup_expired_tokens(conn=conn, batch_size=batch_size)
        for name, n in zip(counts, (row.refresh_tokens, row.sessions, row.revoked_access_tokens), strict=True):
            counts[name] += n
        done = row.refresh_tokens + row.sessions + row.revoked_access_tokens
        return done

    _, batches = await _in_batches(step, on_batch)
    return JobResult(job="cleanup-tokens", counts=counts, batches=batches)


async def archive_audit(
    *,
    conn: asyncpg.Connection,
    days: int = DEFAULT_AUDIT_DAYS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> JobResult:
    """Move audit rows older than `days` to audit_logs_archive, `batch_size` rows per transaction."""
    _check(days=days, batch_size=batch_size)

    async def step() -> int:
        return await maintenance_queries.archive_audit(conn=conn, days=days, batch_size=batch_size)

    moved, batches = await _in_batches(step, on_batch)
    return JobResult(
        job="archive-audit", counts={f"audit rows older than {days} days archived": moved}, batches=batches
    )


async def prune_login_attempts(
    *,
    conn: asyncpg.Connection,
    days: int = DEFAULT_LOGIN_ATTEMPT_DAYS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> JobResult:
    """Delete login attempts older than `days`, `batch_size` rows per transaction."""
    deleted, batches = await _delete_older(
        conn=conn, table="login_attempts", column="created_at", days=days, batch_size=batch_size, on_batch=on_batch
    )
    return JobResult(
        job="prune-login-attempts", counts={f"login attempts older than {days} days deleted": deleted}, batches=batches
    )


async def prune_rate_limit_logs(
    *,
    conn: asyncpg.Connection,
    days: int = DEFAULT_RATE_LIMIT_LOG_DAYS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> JobResult:
    """Delete rate-limit block rows whose window started more than `days` ago."""
    deleted, batches = await _delete_older(
        conn=conn, table="rate_limit_logs", column="window_start", days=days, batch_size=batch_size, on_batch=on_batch
    )
    return JobResult(
        job="prune-rate-limit-logs",
        counts={f"rate-limit log rows older than {days} days deleted": deleted},
        batches=batches,
    )


async def prune_mail(
    *,
    conn: asyncpg.Connection,
    days: int = DEFAULT_MAIL_DAYS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> JobResult:
    """Discard waiting mails whose link is no longer live (used, voided, expired), then delete
    outbox rows delivered, discarded or given up more than `days` ago. Mail still worth
    sending is never deleted."""
    _check(days=days, batch_size=batch_size)

    async def discard() -> int:
        return await maintenance_queries.discard_dead_links(conn=conn, batch_size=batch_size)

    counts, batches = {}, 0
    for column, what in (("sent_at", "delivered"), ("discarded_at", "discarded"), ("dead_at", "given up")):
        deleted, more = await _delete_older(
            conn=conn, table="outbox", column=column, days=days, batch_size=batch_size, on_batch=on_batch
        )
        counts[f"mails {what} more than {days} days ago deleted"] = deleted
        batches += more
    discarded, more = await _in_batches(discard, on_batch)
    counts["waiting mails whose link is no longer valid discarded"] = discarded
    return JobResult(job="prune-mail", counts=counts, batches=batches + more)


async def prune_account_tokens(
    *,
    conn: asyncpg.Connection,
    days: int = DEFAULT_ACCOUNT_TOKEN_DAYS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> JobResult:
    """Delete reset and verification tokens that expired more than `days` ago (used or not)."""
    deleted, batches = await _delete_older(
        conn=conn, table="account_tokens", column="expires_at", days=days, batch_size=batch_size, on_batch=on_batch
    )
    return JobResult(
        job="prune-account-tokens",
        counts={f"account tokens expired more than {days} days ago deleted": deleted},
        batches=batches,
    )


async def _delete_older(
    *, conn: asyncpg.Connection, table: str, column: str, days: int, batch_size: int, on_batch: OnBatch | None
) -> tuple[int, int]:
    """Delete rows of `table` whose `column` is older than `days`, in batches (by an index
    on `column`); the cutoff is fixed once, so the loop ends while new rows keep arriving."""
    _check(days=days, batch_size=batch_size)
    cutoff = await maintenance_queries.cutoff(conn=conn, days=days)

    async def step() -> int:
        return await maintenance_queries.delete_older(
            conn=conn, table=table, column=column, before=cutoff, batch_size=batch_size
        )

    return await _in_batches(step, on_batch)


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
