"""Failure drills: real `manas360 serve` processes on private stores the drills break.

A drill kills or stops only what it started here: a private redis-server, a private
PostgreSQL cluster, or the server process itself. The machine's shared PostgreSQL and
Redis are used only as the test run already uses them (the run's database, the run's key
prefix, which the session fixtures remove).
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from manas360.db import migrate, orm
from manas360.settings import load_settings
from tests.fixtures.seeding import seed_catalog
from tests.fixtures.services import PostgresServer, RedisServer, postgres_server, redis_server


@pytest.fixture
def drill_environ(environ, database, redis_raw) -> Callable[..., dict[str, str]]:
    """The run's environment with a key prefix of this drill's own (under the run's prefix,
    so the session cleanup removes it; the drill's rate counters touch no other test)."""
    prefix = f"{environ['REDIS_PREFIX']}drill-{uuid.uuid4().hex[:8]}:"
    return lambda **overrides: {**environ, "REDIS_PREFIX": prefix, **overrides}


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def _seed(settings) -> None:
    async with orm(settings) as db:
        await seed_catalog(db, settings)


@pytest.fixture
async def private_postgres(drill_environ) -> AsyncIterator[PostgresServer]:
    """A private PostgreSQL cluster holding a migrated, seeded `manas360` database."""
    with postgres_server() as server:
        settings = load_settings(drill_environ(DATABASE_URL=f"{server.url}/manas360"))
        await migrate(settings)
        # A context of its own: this ORM context must not leak into other tests.
        await asyncio.create_task(_seed(settings), context=contextvars.Context())
        yield server
