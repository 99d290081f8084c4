"""Session fixtures: one fresh database built by the real migrations, one Redis prefix,
one in-process app. Every resource is removed at the end of the run."""

from __future__ import annotations

import functools

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from manas360.db import migrate, orm
from manas360.services.ops.seeding import seed_superadmin
from manas360.settings import load_settings
from tests.fixtures import contract
from tests.fixtures.accounts import PASSWORD, Account, login
from tests.fixtures.app import client_for, running_app
from tests.fixtures.environment import REDIS_URL, delete_prefixed_keys, drop_database, test_environ
from tests.fixtures.seeding import seed_catalog


@pytest.fixture(scope="session")
def environ() -> dict[str, str]:
    return test_environ()


@pytest.fixture(scope="session")
def settings(environ):
    return load_settings(environ)


@pytest.fixture(scope="session")
async def database(settings):
    """The run's database: created, migrated exactly as `manas360 migrate` does, seeded."""
    await migrate(settings)
    async with orm(settings) as db:
        await seed_catalog(db, settings)
    yield settings.database_url
    await drop_database(settings.database_url)


@pytest.fixture(scope="session")
async def redis_raw(settings):
    """A plain client on the test Redis, for assertions and for cleaning the run's keys."""
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await delete_prefixed_keys(client, settings.redis_prefix)
    await client.aclose()


@pytest.fixture(scope="session")
async def app(settings, database, redis_raw):
    async with running_app(settings) as app:
        yield app


@pytest.fixture
async def client(app):
    async with client_for(app) as client:
        yield client


@pytest.fixture
async def db(app):
    """For tests that call services directly: the app's database collaborator."""
    return app.ctx.deps.db


@pytest.fixture(scope="session")
async def pg(database):
    """A plain asyncpg connection to the run's database, for assertions and time travel."""
    conn = await asyncpg.connect(database.replace("postgres://", "postgresql://", 1))
    yield conn
    await conn.close()


@pytest.fixture(scope="session", autouse=True)
def _contract_hooks():
    """Every httpx client of the suite checks each answer against docs/openapi.json
    (tests/fixtures/contract.py); `_conforms` fails the test that got a violation."""
    patch = pytest.MonkeyPatch()
    for cls, hook in ((httpx.Client, contract.check_sync), (httpx.AsyncClient, contract.check_async)):
        patch.setattr(cls, "__init__", _with_hook(cls.__init__, hook))
    yield
    patch.undo()


def _with_hook(init, hook):
    @functools.wraps(init)
    def wrapped(self, *args, event_hooks=None, **kwargs):
        hooks = {key: list(value) for key, value in (event_hooks or {}).items()}
        hooks.setdefault("response", []).append(hook)
        init(self, *args, event_hooks=hooks, **kwargs)

    return wrapped


@pytest.fixture(autouse=True)
def _conforms(_contract_hooks):
    contract.take_violations()
    yield
    violations = contract.take_violations()
    assert not violations, "answers outside docs/openapi.json:\n" + "\n".join(violations[:20])


@pytest.fixture
async def superadmin_headers(app, db, client) -> dict[str, str]:
    """A logged-in superadmin's Authorization header (on the run's shared app)."""
    email = "root-shared@example.com"
    await seed_superadmin(
        db=app.ctx.deps.db, settings=app.ctx.deps.settings, store=app.ctx.deps.store, email=email, password=PASSWORD
    )
    return (await login(client, Account(email=email, password=PASSWORD, pair={}))).headers
