"""Database-level plumbing on a raw asyncpg connection: creating the database (pg_database),
the lock that serialises migrations, and the migrations applied (aerich's table)."""

from __future__ import annotations

import asyncpg

DATABASE_EXISTS_SQL = "SELECT 1 FROM pg_database WHERE datname = $1"
CREATE_DATABASE_SQL = "CREATE DATABASE {quoted}"
TAKE_MIGRATION_LOCK_SQL = "SELECT pg_advisory_lock($1)"
RELEASE_MIGRATION_LOCK_SQL = "SELECT pg_advisory_unlock($1)"
MIGRATION_TABLE_EXISTS_SQL = "SELECT to_regclass('aerich') IS NOT NULL"
APPLIED_MIGRATIONS_SQL = "SELECT version FROM aerich WHERE app = $1"


async def database_exists(*, conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval(DATABASE_EXISTS_SQL, name))


async def create_database(*, conn: asyncpg.Connection, name: str) -> None:
    """CREATE DATABASE `name` (quoted as an identifier); asyncpg's duplicate error if it exists."""
    quoted = '"' + name.replace('"', '""') + '"'
    await conn.execute(CREATE_DATABASE_SQL.format(quoted=quoted))


async def take_migration_lock(*, conn: asyncpg.Connection, key: int) -> None:
    """Wait for the session-level advisory lock `key`."""
    await conn.execute(TAKE_MIGRATION_LOCK_SQL, key)


async def release_migration_lock(*, conn: asyncpg.Connection, key: int) -> None:
    await conn.execute(RELEASE_MIGRATION_LOCK_SQL, key)


async def applied_migrations(*, conn: asyncpg.Connection, app: str) -> set[str] | None:
    """The migration files aerich recorded as applied for `app`; None when its table does
    not exist (nothing was ever migrated)."""
    if not await conn.fetchval(MIGRATION_TABLE_EXISTS_SQL):
        return None
    return {row["version"] for row in await conn.fetch(APPLIED_MIGRATIONS_SQL, app)}
