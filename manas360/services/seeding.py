"""Idempotent seeding of reference data and of the operator's superadmin.

Seeding runs on every start of the service, so it must never undo an administrator's
change: rows are inserted when missing (ON CONFLICT DO NOTHING), and default mappings are
written only for a role or plan that has none yet (i.e. on first seed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tortoise import connections
from tortoise.transactions import in_transaction

from manas360 import reference
from manas360.security.passwords import hash_password, verify_password


@dataclass(slots=True)
class SeedReport:
    roles: int = 0
    permissions: int = 0
    plans: int = 0
    features: int = 0
    role_permissions: int = 0
    plan_features: int = 0
    superadmin: str = "unchanged"  # created | updated | unchanged | not configured


async def seed_reference_data() -> SeedReport:
    """Insert missing roles, permissions, plans, features and first-time mappings."""
    report = SeedReport()
    async with in_transaction() as conn:
        # Serialises concurrent seeders (several instances starting at once).
        await conn.execute_query("SELECT pg_advisory_xact_lock(hashtext('manas360.seed'))")
        report.roles = await _insert_many(
            conn, 'INSERT INTO "roles" ("name", "privilege_level") VALUES ($1, $2) ON CONFLICT ("name") DO NOTHING',
            list(reference.ROLES.items()))
        report.permissions = await _insert_many(
            conn, 'INSERT INTO "permissions" ("name", "description") VALUES ($1, $2) ON CONFLICT ("name") DO NOTHING',
            list(reference.PERMISSIONS.items()))
        report.plans = await _insert_many(
            conn, 'INSERT INTO "subscription_plans" ("name", "display_name", "tier", "price_cents") '
                  'VALUES ($1, $2, $3, $4) ON CONFLICT ("name") DO NOTHING',
            [(name, *values) for name, values in reference.PLANS.items()])
        report.features = await _insert_many(
            conn, 'INSERT INTO "features" ("name", "description") VALUES ($1, $2) ON CONFLICT ("name") DO NOTHING',
            [(name, description) for name, (_, description) in reference.FEATURES.items()])
        for role, permissions in reference.ROLE_PERMISSIONS.items():
            report.role_permissions += await _map_if_unmapped(
                conn, owner_table="roles", owner=role, link_table="role_permissions", owner_col="role_id",
                item_table="permissions", item_col="permission_id", items=permissions)
        for plan in reference.PLANS:
            report.plan_features += await _map_if_unmapped(
                conn, owner_table="subscription_plans", owner=plan, link_table="plan_features",
                owner_col="plan_id", item_table="features", item_col="feature_id",
                items=reference.plan_features(plan))
    return report


async def _insert_many(conn, sql: str, rows: list[tuple]) -> int:
    inserted = 0
    for row in rows:
        inserted += await _count_inserted(conn, sql, list(row))
    return inserted


async def _count_inserted(conn, sql: str, values: list) -> int:
    # Tortoise reads the row count of "INSERT 0 n" as 0 (it takes the oid), so count the
    # RETURNING rows instead.
    rows = await conn.execute_query_dict(f"WITH inserted AS ({sql} RETURNING 1) SELECT count(*) AS n FROM inserted",
                                         values)
    return rows[0]["n"]


async def _map_if_unmapped(conn, *, owner_table: str, owner: str, link_table: str, owner_col: str,
                           item_table: str, item_col: str, items: list[str]) -> int:
    sql = f'''
        INSERT INTO "{link_table}" ("{owner_col}", "{item_col}")
        SELECT o."id", i."id" FROM "{owner_table}" o JOIN "{item_table}" i ON i."name" = ANY($2::text[])
        WHERE o."name" = $1
          AND NOT EXISTS (SELECT 1 FROM "{link_table}" l WHERE l."{owner_col}" = o."id")
        ON CONFLICT DO NOTHING'''
    return await _count_inserted(conn, sql, [owner, items])


async def seed_superadmin(*, email: str, password: str, bcrypt_cost: int) -> str:
    """Create or update the superadmin `email` (password, role, lock). Returns what happened."""
    email = email.strip().lower()
    conn = connections.get("default")
    rows = await conn.execute_query_dict(
        'SELECT u."password_hash", r."name" AS "role", u."locked_until" FROM "user_accounts" u '
        'JOIN "roles" r ON r."id" = u."role_id" WHERE LOWER(u."email") = $1 AND u."deleted_at" IS NULL',
        [email])
    if rows and rows[0]["role"] == reference.SUPERADMIN_ROLE and rows[0]["locked_until"] is None \
            and await verify_password(password=password, password_hash=rows[0]["password_hash"]):
        return "unchanged"
    password_hash = await hash_password(password=password, cost=bcrypt_cost)
    async with in_transaction() as tx:
        if rows:
            await tx.execute_query(
                'UPDATE "user_accounts" SET "password_hash" = $2, "locked_until" = NULL, "updated_at" = now(), '
                '"role_id" = (SELECT "id" FROM "roles" WHERE "name" = $3) '
                'WHERE LOWER("email") = $1 AND "deleted_at" IS NULL',
                [email, password_hash, reference.SUPERADMIN_ROLE])
            return "updated"
        await tx.execute_query(
            'INSERT INTO "user_accounts" ("id", "email", "password_hash", "display_name", "role_id") '
            'SELECT $1, $2, $3, $4, "id" FROM "roles" WHERE "name" = $5',
            [str(uuid.uuid4()), email, password_hash, "Superadmin", reference.SUPERADMIN_ROLE])
        return "created"


async def reference_counts() -> dict[str, int]:
    """Row counts of the reference tables (for summaries and tests)."""
    conn = connections.get("default")
    counts = {}
    for table in ("roles", "permissions", "subscription_plans", "features", "role_permissions", "plan_features"):
        rows = await conn.execute_query_dict(f'SELECT count(*) AS n FROM "{table}"')
        counts[table] = rows[0]["n"]
    return counts
