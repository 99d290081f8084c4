"""Database-level plumbing on a raw asyncpg connection: creating the database (pg_database)
and the lock that serialises migrations."""

from __future__ import annotations

import asyncpg

DATABASE_EXISTS_SQL = "SELECT 1 FROM pg_database WHERE datname = $1"
CREATE_DATABASE_SQL = "CREATE DATABASE {quoted}"
TAKE_MIGRATION_LOCK_SQL = "SELECT pg_advisory_lock($1)"
RELEASE_MIGRATION_LOCK_SQL = "SELECT pg_advisory_unlock($1)"


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
