"""Drill: an account is erased after the last backup; the backup is restored. Before serving,
`manas360 serve` replays the erasure ledger kept outside the database (ERASURE_LEDGER_PATH,
docs/operations.md, "Restoring a backup"): the restored copy of the account is erased again,
and a second replay finds nothing."""

from __future__ import annotations

import asyncio
import contextvars
import uuid

import asyncpg
import pytest

from manas360.db import migrate, orm
from manas360.server import _preflight
from manas360.settings import load_settings
from tests.drills.test_restore import _manas360, _pg_tool
from tests.fixtures.accounts import API, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.environment import delete_prefixed_keys, drop_database
from tests.fixtures.seeding import seed_catalog

pytestmark = pytest.mark.slow


@pytest.fixture
async def databases(environ, redis_raw, tmp_path):
    base = environ["DATABASE_URL"].rpartition("/")[0]
    tag = uuid.uuid4().hex[:8]
    prefix = f"{environ['REDIS_PREFIX']}erasure-{tag}:"
    ledger = str(tmp_path / "erasures.ledger")
    environs = {
        role: {
            **environ,
            "DATABASE_URL": f"{base}/m360_erasure_{role}_{tag}",
            "REDIS_PREFIX": prefix,
            "ERASURE_LEDGER_PATH": ledger,
        }
        for role in ("source", "restored")
    }
    yield environs
    for each in environs.values():
        await drop_database(each["DATABASE_URL"])
    await delete_prefixed_keys(redis_raw, prefix)


async def _seed(settings) -> None:
    async with orm(settings) as db:
        await seed_catalog(db, settings)


async def _row(settings, user_id: str):
    conn = await asyncpg.connect(settings.database_url.replace("postgres://", "postgresql://", 1))
    try:
        return await conn.fetchrow(
            "SELECT email, display_name, deleted_at, "
            "(SELECT count(*) FROM erasure_ledger WHERE user_id = u.id) AS ledger FROM user_accounts u WHERE id = $1",
            uuid.UUID(user_id),
        )
    finally:
        await conn.close()


async def test_a_restore_from_before_a_purge_is_erased_again_before_serving(databases, tmp_path):
    source, restored = (load_settings(databases[role]) for role in ("source", "restored"))
    await migrate(source)
    await asyncio.create_task(_seed(source), context=contextvars.Context())
    dump = tmp_path / "manas360.dump"
    name = f"Restored {uuid.uuid4().hex[:8]}"
    async with running_app(source) as app, client_for(app) as client:
        account = await register(client, display_name=name)
        _pg_tool("pg_dump", "-Fc", "-f", str(dump), source.database.database, settings=source)
        assert (await client.delete(f"{API}/me", headers=account.headers)).status_code == 202
    conn = await asyncpg.connect(source.database_url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(
            "UPDATE user_accounts SET deletion_at = now() - interval '1 s' WHERE id = $1", uuid.UUID(account.id)
        )
    finally:
        await conn.close()
    purged = _manas360("maintenance", "purge-deleted", environ=databases["source"])
    assert "purge-deleted: 1 accounts erased" in purged, purged
    assert account.id in (tmp_path / "erasures.ledger").read_text()

    _pg_tool("createdb", restored.database.database, settings=restored)
    _pg_tool(
        "pg_restore", "--no-owner", "--exit-on-error", "-d", restored.database.database, str(dump), settings=restored
    )
    before = await _row(restored, account.id)
    assert (before["email"], before["deleted_at"]) == (account.email, None)  # the backup knows nothing of it

    assert await _preflight(restored) == []  # what `manas360 serve` runs before its workers start
    after = await _row(restored, account.id)
    assert after["deleted_at"] is not None and after["ledger"] == 1
    assert account.email not in after["email"] and after["display_name"] == ""
    dumped = _pg_tool("pg_dump", "--data-only", restored.database.database, settings=restored)
    assert account.email not in dumped and name not in dumped
    again = _manas360("maintenance", "replay-erasures", environ=databases["restored"])
    assert "0 accounts erased again" in again, again
