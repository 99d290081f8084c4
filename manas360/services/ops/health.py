"""Liveness and readiness: PostgreSQL and Redis actually queried, with pool and memory stats."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Awaitable
from typing import Any

from manas360 import __version__
from manas360.db import Database
from manas360.queries.mail import outbox as outbox_queries
from manas360.queries.ops import health as health_queries
from manas360.store import Store
from manas360.store.client import ping, pool_stats

CHECK_TIMEOUT_S = 2.0
READINESS_TTL_S = 1.0  # how long one worker reuses a readiness result
_STARTED = time.monotonic()


async def check_database(*, db: Database) -> str:
    """'ok' when PostgreSQL answers SELECT 1 within the timeout, else a short reason.

    A query that has not answered in time is left to end by itself (at the pool's command
    timeout) rather than cancelled: asyncpg holds a cancelled call until then anyway, and
    the probe must answer within CHECK_TIMEOUT_S even when PostgreSQL is frozen.
    """
    try:
        conn = db.connection
    except Exception as exc:  # no ORM context (yet): not ready, never a 500
        return f"error: {type(exc).__name__}"
    query = asyncio.ensure_future(health_queries.ping(conn=conn))
    done, _ = await asyncio.wait({query}, timeout=CHECK_TIMEOUT_S)
    if not done:
        query.add_done_callback(_discard_outcome)
        return "timeout"
    if query.exception() is not None:  # any failure means "not ready"; the reason is reported, not raised
        return f"error: {type(query.exception()).__name__}"
    return "ok"


def _discard_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def check_redis(store: Store) -> str:
    try:
        await asyncio.wait_for(ping(store), CHECK_TIMEOUT_S)
        return "ok"
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # as above
        return f"error: {type(exc).__name__}"


def memory_stats() -> dict[str, int]:
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_bytes": rss_pages * page, "peak_rss_bytes": peak_kib * 1024}


Readiness = tuple[dict[str, str], dict[str, float]]
"""Each store's check result, and how long that check took in milliseconds."""


async def readiness(*, db: Database, store: Store) -> Readiness:
    """Query both stores now (uncached: see ReadinessCache for what the endpoints use)."""
    (database, database_ms), (redis, redis_ms) = await asyncio.gather(
        _timed(check_database(db=db)), _timed(check_redis(store))
    )
    return {"database": database, "redis": redis}, {"database": database_ms, "redis": redis_ms}


async def _timed(check: Awaitable[str]) -> tuple[str, float]:
    started = time.perf_counter()
    result = await check
    return result, round((time.perf_counter() - started) * 1000, 3)


class ReadinessCache:
    """One worker's latest readiness result, reused for `ttl_s`; callers arriving while a
    check runs await that check (single flight). The health endpoints are unthrottled and
    unauthenticated: uncached, a flood of them was a flood of queries and pings draining
    both pools. A store going down is reported at most `ttl_s` (+ the check) later."""

    def __init__(self, *, ttl_s: float = READINESS_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._result: Readiness | None = None
        self._checked_at = 0.0
        self._running: asyncio.Future[Readiness] | None = None

    async def get(self, *, db: Database, store: Store) -> dict[str, str]:
        """The cached result if fresh, else the result of the one check in progress."""
        checks, _ = await self.get_timed(db=db, store=store)
        return checks

    async def get_timed(self, *, db: Database, store: Store) -> Readiness:
        """As `get`, with the latency of the checks that produced the result."""
        if self._result is None or time.monotonic() - self._checked_at >= self.ttl_s:
            if self._running is None:
                self._running = asyncio.ensure_future(self._check(db=db, store=store))
            # Shielded: a caller that goes away (client disconnect) must not cancel the
            # check the other callers are waiting for.
            checks, latency = await asyncio.shield(self._running)
        else:
            checks, latency = self._result
        return dict(checks), dict(latency)

    async def _check(self, *, db: Database, store: Store) -> Readiness:
        try:
            result = await readiness(db=db, store=store)
            self._result, self._checked_at = result, time.monotonic()
            return result
        finally:
            self._running = None


async def outbox_counts(*, db: Database) -> dict[str, int] | None:
    """The outbox's pending rows and dead letters, or None when the count fails (bounded)."""
    try:
        counts = await asyncio.wait_for(outbox_queries.counts(conn=db.connection, channel="mail"), CHECK_TIMEOUT_S)
    except Exception:  # a slow or failing database is /health's `database` field's to report
        return None
    return {"pending": counts.pending, "dead": counts.dead}


async def report(*, db: Database, store: Store, cache: ReadinessCache, mail: str) -> dict[str, Any]:
    """The full /health body; `status` is 'ok' only when both stores answer (`mail`, the
    mail sender's state, and `outbox`, its pending rows and dead letters, are reported but
    never make the service unready)."""
    checks, latency = await cache.get_timed(db=db, store=store)
    healthy = all(value == "ok" for value in checks.values())
    return {
        "status": "ok" if healthy else "degraded",
        **checks,
        "mail": mail,
        "outbox": await outbox_counts(db=db) if checks.get("database") == "ok" else None,
        "latency_ms": latency,
        "pool": {"database": db.pool_stats(), "redis": pool_stats(store)},
        "uptime_s": round(time.monotonic() - _STARTED, 3),
        "memory": memory_stats(),
        "version": __version__,
        "pid": os.getpid(),
    }
