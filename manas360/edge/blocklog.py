"""Blocked requests, aggregated into rate_limit_logs: one row per (policy, key, window).

A blocked request only bumps a counter in this worker's memory. Every FLUSH_INTERVAL_S the
buffer is written in one statement that inserts new rows and adds to existing ones, so a
flood of 429s costs PostgreSQL one upsert per key and flush, never one insert per request.
A flush that fails keeps its counts for the next one; the buffer is bounded (MAX_KEYS), and
what does not fit is counted as dropped rather than held.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
from loguru import logger
from tortoise.exceptions import BaseORMException

from manas360.db import Database
from manas360.queries.ops import blocklog as blocklog_queries

if TYPE_CHECKING:
    from manas360.http.sanic_types import App

FLUSH_INTERVAL_S = 2.0
MAX_KEYS = 10_000
MAX_KEY_CHARS = 200  # rate_limit_logs.key is VARCHAR(200)

Slot = tuple[str, str, datetime]


@dataclass(slots=True)
class _Blocked:
    """One slot's blocked requests so far, updated in place."""

    count: int
    first_at: datetime
    last_at: datetime


# What a flush may meet when PostgreSQL is down, slow or refuses: logged, never raised.
DATABASE_ERRORS = (BaseORMException, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class BlockLog:
    """This worker's buffer of blocked requests, flushed to PostgreSQL."""

    def __init__(self, *, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._pending: dict[Slot, _Blocked] = {}

    def record(self, *, policy: str, key: str, window_s: int, now: float | None = None) -> None:
        """Count one blocked request of `key` under `policy` in the window it fell in."""
        now = time.time() if now is None else now
        # Windows are aligned on the epoch like the limiter's (which reads Redis's clock;
        # a skew between the two only moves a block near an edge into the next row).
        window_start = datetime.fromtimestamp(now - now % window_s, UTC)
        at = datetime.fromtimestamp(now, UTC)
        self._add((policy, key[:MAX_KEY_CHARS], window_start), 1, at, at)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self, *, db: Database) -> int:
        """Write the buffer (one statement); the number of rows written, 0 if it failed."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        rows = sorted(batch.items())
        try:
            # Sorted rows give every worker the same lock order: concurrent flushes cannot deadlock.
            await blocklog_queries.add_blocked(
                conn=db.connection,
                policies=[slot[0] for slot, _ in rows],
                keys=[slot[1] for slot, _ in rows],
                window_starts=[slot[2] for slot, _ in rows],
                counts=[entry.count for _, entry in rows],
                first_at=[entry.first_at for _, entry in rows],
                last_at=[entry.last_at for _, entry in rows],
            )
        except DATABASE_ERRORS as exc:
            logger.warning(
                "rate_limit_logs flush of {} rows failed ({}); kept for the next flush", len(rows), type(exc).__name__
            )
            for slot, entry in rows:
                self._add(slot, entry.count, entry.first_at, entry.last_at)
            return 0
        return len(rows)

    def _add(self, slot: Slot, blocked: int, first_at: datetime, last_at: datetime) -> None:
        entry = self._pending.get(slot)
        if entry is not None:
            entry.count += blocked
            entry.first_at = min(entry.first_at, first_at)
            entry.last_at = max(entry.last_at, last_at)
        elif len(self._pending) < self.max_keys:  # past it, a new slot is dropped: memory stays bounded
            self._pending[slot] = _Blocked(blocked, first_at, last_at)


async def run_flusher(block_log: BlockLog, *, db: Database, interval_s: float = FLUSH_INTERVAL_S) -> None:
    """Flush every `interval_s` until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        await block_log.flush(db=db)


async def flush_block_log(app: App) -> int:
    """Write the app's buffered blocks now (tests, shutdown); rows written."""
    block_log: BlockLog = app.ctx.edge.block_log  # install_edge's EdgeLimiter
    return await block_log.flush(db=app.ctx.deps.db)
