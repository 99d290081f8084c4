"""`manas360 migrate` from an empty database builds the whole schema; a second run is a no-op."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from manas360.db import migrate
from manas360.settings import load_settings
from tests.fixtures.environment import drop_database

TABLES = {
    "user_accounts",
    "roles",
    "permissions",
    "role_permissions",
    "subscription_plans",
    "features",
    "plan_features",
    "user_subscriptions",
    "sessions",
    "tokens",
    "revoked_access_tokens",
    "login_attempts",
    "rate_limit_logs",
    "audit_logs",
    "audit_logs_archive",
    "aerich",
}
INDEXES = {
    "uq_user_accounts_email_live",
    "idx_sessions_user",
    "idx_audit_logs_target",
    "idx_audit_logs_action",
    "idx_login_attempts_email_time",
    "idx_tokens_parent",
    "idx_tokens_user",
    "idx_user_accounts_role",
    "idx_user_subscriptions_plan",
    "idx_login_attempts_user",
    "idx_audit_logs_actor",
    "idx_user_accounts_email_trgm",
    "idx_user_accounts_name_trgm",
    "uq_mv_users_with_subscription",
    "uq_mv_user_permissions",
    "uq_mv_user_features",
}
DUPLICATES = {"idx_role_permissions_role", "idx_plan_features_plan", "idx_tokens_hash_live"}
"""Indexes that only repeated a unique constraint's leading column (dropped by migration 3)."""
VIEWS = {"mv_users_with_subscription", "mv_user_permissions", "mv_user_features"}
FUNCTIONS = {"refresh_materialized_views", "cleanup_expired_tokens", "cleanup_old_audit_logs"}


@pytest.fixture
async def empty_database(environ):
    url = environ["DATABASE_URL"] + "_mig"
    settings = load_settings({**environ, "DATABASE_URL": url})
    yield settings
    await drop_database(url)


async def _catalog(settings) -> dict[str, set[str]]:
    conn = await asyncpg.connect(settings.database_url.replace("postgres://", "postgresql://", 1))
    try:
        return {
            "tables": {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")},
            "indexes": {r[0] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname='public'")},
            "views": {r[0] for r in await conn.fetch("SELECT matviewname FROM pg_matviews WHERE schemaname='public'")},
            "functions": {
                r[0]
                for r in await conn.fetch(
                    "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname='public'"
                )
            },
            "applied": {r[0] for r in await conn.fetch("SELECT version FROM aerich")},
        }
    finally:
        await conn.close()


async def test_migrate_from_empty_creates_every_object_and_is_idempotent(empty_database):
    applied = await migrate(empty_database)
    assert len(applied) >= 2
    catalog = await _catalog(empty_database)
    assert TABLES <= catalog["tables"]
    assert INDEXES <= catalog["indexes"]
    assert not DUPLICATES & catalog["indexes"]
    assert VIEWS == catalog["views"]
    assert FUNCTIONS <= catalog["functions"]
    assert await migrate(empty_database) == []
    assert await _catalog(empty_database) == catalog


async def test_concurrent_migrations_serialise_on_the_advisory_lock(empty_database):
    first, second = await asyncio.gather(migrate(empty_database), migrate(empty_database))
    assert sorted([len(first), len(second)])[0] == 0 and max(len(first), len(second)) >= 2


async def test_every_foreign_key_is_the_leading_column_of_an_index(database, settings):
    """A delete of a parent row finds its children through an index, never by a scan."""
    conn = await asyncpg.connect(settings.database_url.replace("postgres://", "postgresql://", 1))
    try:
        unindexed = await conn.fetch("""
            SELECT c.conrelid::regclass AS "table", a.attname AS "column"
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND NOT EXISTS (
                SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])""")
    finally:
        await conn.close()
    assert [(str(r["table"]), r["column"]) for r in unindexed] == []


async def test_email_is_unique_case_insensitively_among_live_accounts(database, settings):
    conn = await asyncpg.connect(settings.database_url.replace("postgres://", "postgresql://", 1))
    try:
        role = await conn.fetchval("SELECT id FROM roles WHERE name='user'")
        insert = (
            "INSERT INTO user_accounts (id, email, password_hash, role_id, deleted_at) "
            "VALUES (gen_random_uuid(), $1, 'x', $2, $3)"
        )
        await conn.execute(insert, "dup@example.com", role, None)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, "dup@example.com", role, None)
        with pytest.raises(asyncpg.CheckViolationError):  # stored lower-cased, always
            await conn.execute(insert, "Dup@Example.com", role, None)
        await conn.execute("UPDATE user_accounts SET deleted_at = now() WHERE email = 'dup@example.com'")
        await conn.execute(insert, "dup@example.com", role, None)  # a deleted account frees the address
    finally:
        await conn.execute("DELETE FROM user_accounts WHERE email = 'dup@example.com'")
        await conn.close()


async def test_sql_functions_do_their_work(database, settings):
    conn = await asyncpg.connect(settings.database_url.replace("postgres://", "postgresql://", 1))
    old, new = f"test.old.{uuid.uuid4().hex[:8]}", f"test.new.{uuid.uuid4().hex[:8]}"
    try:
        # Actions of this test's own: the run's database is shared with other tests' audit rows.
        await conn.execute(
            "INSERT INTO audit_logs (action, created_at) VALUES ($1, now() - interval '40 days'), ($2, now())", old, new
        )
        assert await conn.fetchval("SELECT cleanup_old_audit_logs(30)") == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_logs_archive WHERE action = $1", old) == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_logs WHERE action = $1", old) == 0
        await conn.execute("SELECT refresh_materialized_views()")
        row = await conn.fetchrow("SELECT * FROM cleanup_expired_tokens()")
        assert set(row.keys()) == {"refresh_tokens", "sessions", "revoked_access_tokens"}
    finally:
        await conn.execute("DELETE FROM audit_logs WHERE action = ANY($1::text[])", [old, new])
        await conn.execute("DELETE FROM audit_logs_archive WHERE action = $1", old)
        await conn.close()
