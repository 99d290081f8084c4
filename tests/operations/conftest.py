"""A database of the operations suites' own (migrated, reference data seeded), so seeding
tens of thousands of users or running maintenance jobs never touches other suites' rows."""

from __future__ import annotations

import asyncio
import contextvars

import asyncpg
import pytest

from manas360.db import migrate, orm
from manas360.settings import load_settings
from tests.fixtures.environment import drop_database
from tests.fixtures.seeding import seed_catalog


async def _seed_reference(settings) -> None:
    async with orm(settings) as db:
        await seed_catalog(db, settings)


@pytest.fixture(scope="session")
async def ops_settings(environ):
    url = environ["DATABASE_URL"] + "_ops"
    settings = load_settings({**environ, "DATABASE_URL": url})
    await migrate(settings)
    # A context of its own: the ORM context must not leak into other suites' tests.
    await asyncio.create_task(_seed_reference(settings), context=contextvars.Context())
    yield settings
    await drop_database(url)


@pytest.fixture(scope="session")
def ops_environ(environ, ops_settings) -> dict[str, str]:
    return {**environ, "DATABASE_URL": ops_settings.database_url}


@pytest.fixture
async def pg(ops_settings):
    conn = await asyncpg.connect(ops_settings.database_url.replace("postgres://", "postgresql://", 1))
    yield conn
    await conn.close()
