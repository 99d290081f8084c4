"""Seeding: the reference rows (roles, permissions, subscription_plans, features), their
first-time mappings, and the operator's superadmin in user_accounts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries.access.rbac import Mapping

SEED_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('manas360.seed'))"
INSERT_ROLE_SQL = 'INSERT INTO "roles" ("name", "privilege_level") VALUES ($1, $2) ON CONFLICT ("name") DO NOTHING'
INSERT_PERMISSION_SQL = (
    'INSERT INTO "permissions" ("name", "description") VALUES ($1, $2) ON CONFLICT ("name") DO NOTHING'
)
INSERT_PLAN_SQL = (
    'INSERT INTO "subscription_plans" ("name", "display_name", "tier", "price_cents") '
    'VALUES ($1, $2, $3, $4) ON CONFLICT ("name") DO NOTHING'
)
INSERT_FEATURE_SQL = 'INSERT INTO "features" ("name", "description") VALUES ($1, $2) ON CONFLICT ("name") DO NOTHING'
MAP_IF_UNMAPPED_SQL = """
        INSERT INTO "{link_table}" ("{owner_col}", "{item_col}")
        SELECT o."id", i."id" FROM "{owner_table}" o JOIN "{item_table}" i ON i."name" = ANY($2::text[])
        WHERE o."name" = $1
          AND NOT EXISTS (SELECT 1 FROM "{link_table}" l WHERE l."{owner_col}" = o."id")
        ON CONFLICT DO NOTHING"""
# Tortoise reads the row count of "INSERT 0 n" as 0 (it takes the oid), so every insert
# above is counted by its RETURNING rows instead.
COUNT_INSERTED_SQL = "WITH inserted AS ({sql} RETURNING 1) SELECT count(*) AS n FROM inserted"
# DO NOTHING, never DO UPDATE: an account registered meanwhile is not silently taken over.
INSERT_SUPERADMIN_SQL = (
    'INSERT INTO "user_accounts" ("id", "email", "password_hash", "display_name", "role_id") '
    'SELECT $1, $2, $3, $4, "id" FROM "roles" WHERE "name" = $5 '
    'ON CONFLICT (LOWER("email")) WHERE "deleted_at" IS NULL DO NOTHING RETURNING "id"'
)
UPDATE_SUPERADMIN_SQL = (
    'UPDATE "user_accounts" SET "password_hash" = $2::varchar, "locked_until" = NULL, "updated_at" = now(), '
    '"password_version" = "password_version" + ("password_hash" <> $2::varchar)::int, '
    '"role_id" = (SELECT "id" FROM "roles" WHERE "name" = $3) WHERE "id" = $1'
)
LOCK_ACCOUNT_BY_EMAIL_SQL = (
    'SELECT u."id", u."password_hash", r."name" AS "role", u."locked_until" FROM "user_accounts" u '
    'JOIN "roles" r ON r."id" = u."role_id" WHERE LOWER(u."email") = $1 AND u."deleted_at" IS NULL '
    "FOR NO KEY UPDATE OF u"
)
REFERENCE_TABLES = ("roles", "permissions", "subscription_plans", "features", "role_permissions", "plan_features")
COUNT_TABLE_SQL = 'SELECT count(*) AS n FROM "{table}"'


async def take_seed_lock(*, conn: BaseDBAsyncClient) -> None:
    """The seed's advisory lock, held until the transaction ends."""
    await conn.execute_query(SEED_LOCK_SQL)


async def _count_inserted(conn: BaseDBAsyncClient, sql: str, values: list[object]) -> int:
    rows = await conn.execute_query_dict(COUNT_INSERTED_SQL.format(sql=sql), values)
    inserted: int = rows[0]["n"]  # Tortoise's rows are untyped dicts: count(*) is a bigint
    return inserted


async def insert_role(*, conn: BaseDBAsyncClient, name: str, privilege_level: int) -> int:
    """Insert the role unless it exists; rows inserted (0 or 1)."""
    return await _count_inserted(conn, INSERT_ROLE_SQL, [name, privilege_level])


async def insert_permission(*, conn: BaseDBAsyncClient, name: str, description: str) -> int:
    return await _count_inserted(conn, INSERT_PERMISSION_SQL, [name, description])


async def insert_plan(*, conn: BaseDBAsyncClient, name: str, display_name: str, tier: int, price_cents: int) -> int:
    return await _count_inserted(conn, INSERT_PLAN_SQL, [name, display_name, tier, price_cents])


async def insert_feature(*, conn: BaseDBAsyncClient, name: str, description: str) -> int:
    return await _count_inserted(conn, INSERT_FEATURE_SQL, [name, description])


async def map_if_unmapped(*, conn: BaseDBAsyncClient, mapping: Mapping, owner: str, items: list[str]) -> int:
    """Link the owner to `items` only if it has no item yet (first seed); links inserted."""
    sql = MAP_IF_UNMAPPED_SQL.format(
        owner_table=mapping.owner_table,
        link_table=mapping.link_table,
        owner_col=mapping.owner_col,
        item_table=mapping.item_table,
        item_col=mapping.item_col,
    )
    return await _count_inserted(conn, sql, [owner, items])


async def insert_superadmin(
    *, conn: BaseDBAsyncClient, user_id: str, email: str, password_hash: str, display_name: str, role: str
) -> str | None:
    """Insert the account unless a live one has the address; its id, or None."""
    rows = await conn.execute_query_dict(INSERT_SUPERADMIN_SQL, [user_id, email, password_hash, display_name, role])
    return str(rows[0]["id"]) if rows else None


async def update_superadmin(*, conn: BaseDBAsyncClient, user_id: str, password_hash: str, role: str) -> None:
    """Set the hash and role, and lift any lock."""
    await conn.execute_query(UPDATE_SUPERADMIN_SQL, [user_id, password_hash, role])


class LockedAccount(NamedTuple):
    id: uuid.UUID
    password_hash: str
    role: str
    locked_until: datetime | None


async def lock_account_by_email(*, conn: BaseDBAsyncClient, email: str) -> LockedAccount | None:
    """Lock the live account with this address (FOR NO KEY UPDATE OF u); id, hash, role, locked_until."""
    rows = await conn.execute_query_dict(LOCK_ACCOUNT_BY_EMAIL_SQL, [email])
    return LockedAccount(**rows[0]) if rows else None


async def reference_counts(*, conn: BaseDBAsyncClient) -> dict[str, int]:
    """Row counts of the reference tables."""
    counts = {}
    for table in REFERENCE_TABLES:
        rows = await conn.execute_query_dict(COUNT_TABLE_SQL.format(table=table))
        counts[table] = rows[0]["n"]
    return counts
