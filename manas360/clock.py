"""One clock for the auth services: aware UTC datetimes and integer milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries import clock as clock_queries

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    """The app's clock (aware UTC), handed to services that take the time of this worker.
    Validity decided in PostgreSQL reads the database's clock instead (`db_now`)."""

    __slots__ = ()

    def now(self) -> datetime:
        return utcnow()

    def now_ms(self) -> int:
        """`to_ms(self.now())` without building a datetime (the hot path's plan-end check)."""
        return time.time_ns() // 1_000_000


async def db_now(conn: BaseDBAsyncClient) -> datetime:
    """PostgreSQL's clock now (not the transaction's start): the clock that decides validity
    (subscription start and end, token expiry, token epochs), the same for every worker."""
    return await clock_queries.fetch_now(conn=conn)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch (the precision of token epochs and `iat_ms`)."""
    return (moment - _EPOCH) // _MS  # integer arithmetic: no float rounding


def epoch_ms(moment: datetime | None) -> int:
    """A token epoch in ms, rounded UP (0 for none): a token issued at or before it is dead, so
    rounding up only ever errs towards "revoked", and `epoch_ms(...) + 1` is always alive."""
    return -((_EPOCH - moment) // _MS) if moment is not None else 0


def from_ms(ms: int) -> datetime:
    return _EPOCH + ms * _MS


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 with an explicit UTC offset, as docs/api.md requires."""
    return moment.astimezone(UTC).isoformat() if moment is not None else None
