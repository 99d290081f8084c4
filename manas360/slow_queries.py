"""The slow-query log (DB_SLOW_QUERY_MS): statements slower than the threshold, once each,
as a WARNING with the duration, the request id and the statement text, never its values.

Installed per connection as an asyncpg query logger from the pool's `init` hook (Tortoise
hands unknown credentials to asyncpg.create_pool); with the threshold at 0 nothing is
installed and asyncpg skips its timing entirely.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import asyncpg
from asyncpg.connection import LoggedQuery
from loguru import logger

SLOW_QUERY_LOGGER = "manas360.slow_query"
STATEMENT_CHARS = 200
# Values are sent as bind parameters ($1) and never read here; a literal written into the
# statement text could still be an email or a hash, so quoted literals are blanked too.
_QUOTED_LITERAL = re.compile(r"'(?:[^']|'')*'?")
_WHITESPACE = re.compile(r"\s+")
_slow = logger.bind(logger_name=SLOW_QUERY_LOGGER)


def statement_text(*, query: str) -> str:
    """The statement as logged: literals blanked, whitespace collapsed, ~200 characters."""
    text = _WHITESPACE.sub(" ", _QUOTED_LITERAL.sub("'…'", query)).strip()
    return text if len(text) <= STATEMENT_CHARS else text[:STATEMENT_CHARS] + "…"


def slow_query_init(*, threshold_ms: int) -> Callable[[asyncpg.Connection], Awaitable[None]] | None:
    """The pool `init` hook logging this pool's slow statements; None when off (0)."""
    if threshold_ms <= 0:
        return None
    threshold_s = threshold_ms / 1000

    def log_if_slow(record: LoggedQuery) -> None:
        # Called through loop.call_soon from the querying task: its context, its request id.
        if record.elapsed > threshold_s:
            failed = type(record.exception).__name__ if record.exception is not None else None
            _slow.warning(
                "slow query {duration_ms} ms: {statement}",
                duration_ms=round(record.elapsed * 1000, 1),
                statement=statement_text(query=record.query),
                failed=failed,
            )

    async def init(connection: asyncpg.Connection) -> None:
        connection.add_query_logger(log_if_slow)

    return init
