"""Synthetic users for load tests: COPY into temporary staging tables, then one merge into
user_accounts and user_subscriptions per batch (raw asyncpg connection)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

UserRecord = tuple[uuid.UUID, str, str, int, datetime, datetime | None]
"""One staged account, in USER_COLUMNS order."""
SubscriptionRecord = tuple[uuid.UUID, uuid.UUID, int, str, datetime, datetime]
"""One staged subscription, in SUBSCRIPTION_COLUMNS order."""

ROLE_IDS_SQL = 'SELECT "id", "name" FROM "roles"'
PLAN_IDS_SQL = 'SELECT "id", "name" FROM "subscription_plans"'
STAGE_SQL = """
    CREATE TEMP TABLE IF NOT EXISTS "synthetic_users_stage" (
        "id" uuid, "email" varchar(320), "display_name" varchar(100), "role_id" int,
        "created_at" timestamptz, "last_login_at" timestamptz
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS "synthetic_subscriptions_stage" (
        "id" uuid, "user_id" uuid, "plan_id" int, "status" varchar(16),
        "starts_at" timestamptz, "ends_at" timestamptz
    ) ON COMMIT DELETE ROWS;
"""
USERS_STAGE, SUBSCRIPTIONS_STAGE = "synthetic_users_stage", "synthetic_subscriptions_stage"
USER_COLUMNS = ("id", "email", "display_name", "role_id", "created_at", "last_login_at")
SUBSCRIPTION_COLUMNS = ("id", "user_id", "plan_id", "status", "starts_at", "ends_at")
EXISTING_EMAILS_SQL = (
    'SELECT LOWER("email") FROM "user_accounts" WHERE LOWER("email") = ANY($1::text[]) AND "deleted_at" IS NULL'
)
# Subscriptions go in only for users this statement inserted: a user who already existed
# keeps exactly the rows it has. The unique index is LOWER(email) among live rows.
MERGE_SQL = """
    WITH new_users AS (
        INSERT INTO "user_accounts" ("id", "email", "password_hash", "display_name", "role_id", "status",
                                     "created_at", "updated_at", "last_login_at")
        SELECT s."id", s."email", $1, s."display_name", s."role_id", 'active', s."created_at", s."created_at",
               s."last_login_at"
        FROM "synthetic_users_stage" s
        ON CONFLICT (LOWER("email")) WHERE "deleted_at" IS NULL DO NOTHING
        RETURNING "id"
    ), new_subscriptions AS (
        INSERT INTO "user_subscriptions" ("id", "user_id", "plan_id", "status", "starts_at", "ends_at", "created_at")
        SELECT t."id", t."user_id", t."plan_id", t."status", t."starts_at", t."ends_at", t."starts_at"
        FROM "synthetic_subscriptions_stage" t JOIN new_users n ON n."id" = t."user_id"
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM new_users) AS "users", (SELECT count(*) FROM new_subscriptions) AS "subscriptions"
"""
ANALYZE_SQL = 'ANALYZE "user_accounts", "user_subscriptions"'


async def role_ids(*, conn: asyncpg.Connection) -> dict[str, int]:
    """Role name -> id."""
    return {r["name"]: r["id"] for r in await conn.fetch(ROLE_IDS_SQL)}


async def plan_ids(*, conn: asyncpg.Connection) -> dict[str, int]:
    """Plan name -> id."""
    return {r["name"]: r["id"] for r in await conn.fetch(PLAN_IDS_SQL)}


async def create_stage_tables(*, conn: asyncpg.Connection) -> None:
    """The session's staging tables (emptied at every commit)."""
    await conn.execute(STAGE_SQL)


async def existing_emails(*, conn: asyncpg.Connection, emails: list[str]) -> set[str]:
    """Those of the (lower-case) `emails` that a live account already has."""
    return {r[0] for r in await conn.fetch(EXISTING_EMAILS_SQL, emails)}


async def stage_users(*, conn: asyncpg.Connection, records: Sequence[UserRecord]) -> None:
    await conn.copy_records_to_table(USERS_STAGE, records=records, columns=USER_COLUMNS)


async def stage_subscriptions(*, conn: asyncpg.Connection, records: Sequence[SubscriptionRecord]) -> None:
    await conn.copy_records_to_table(SUBSCRIPTIONS_STAGE, records=records, columns=SUBSCRIPTION_COLUMNS)


async def merge_staged(*, conn: asyncpg.Connection, password_hash: str) -> tuple[int, int]:
    """Insert the staged users that are missing, and their subscriptions; (users, subscriptions) inserted."""
    users, subscriptions = await conn.fetchrow(MERGE_SQL, password_hash)
    return users, subscriptions


async def analyze_accounts(*, conn: asyncpg.Connection) -> None:
    """Fresh planner statistics after a bulk insert."""
    await conn.execute(ANALYZE_SQL)
