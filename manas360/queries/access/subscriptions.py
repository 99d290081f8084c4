"""Subscriptions: user_subscriptions (and the plan a user is on, for every reader)."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

# The user's current subscription (alias s: plan_id, status, starts_at, ends_at) and its plan
# (alias p, NULL when free), for any query over "user_accounts" u: one definition of
# "active" for every reader.
ACTIVE_PLAN_JOIN = """
    LEFT JOIN LATERAL (
        SELECT us."plan_id", us."status", us."starts_at", us."ends_at" FROM "user_subscriptions" us
        WHERE us."user_id" = u."id" AND us."status" = 'active'
          AND us."starts_at" <= now() AND (us."ends_at" IS NULL OR us."ends_at" > now())
        ORDER BY us."starts_at" DESC LIMIT 1
    ) s ON TRUE
    LEFT JOIN "subscription_plans" p ON p."id" = s."plan_id"
"""

IS_PAST_SQL = "SELECT $1::timestamptz <= now() AS past"
CANCEL_ACTIVE_SQL = (
    'UPDATE "user_subscriptions" '
    'SET "status" = \'cancelled\', "ends_at" = LEAST(COALESCE("ends_at", now()), now()) '
    'WHERE "user_id" = $1 AND "status" = \'active\' AND ("ends_at" IS NULL OR "ends_at" > now())'
)
START_SQL = (
    'INSERT INTO "user_subscriptions" ("id", "user_id", "plan_id", "status", "starts_at", "ends_at") '
    'SELECT gen_random_uuid(), $1, "id", \'active\', now(), $2 FROM "subscription_plans" WHERE "name" = $3 '
    'RETURNING "id"'
)


async def is_past(*, conn: BaseDBAsyncClient, moment: datetime) -> bool:
    """Whether `moment` is at or before the transaction's now()."""
    rows = await conn.execute_query_dict(IS_PAST_SQL, [moment])
    return bool(rows[0]["past"])


async def cancel_active(*, conn: BaseDBAsyncClient, user_id: str) -> None:
    """End the user's current subscription now (transaction time)."""
    await conn.execute_query(CANCEL_ACTIVE_SQL, [user_id])


async def start_subscription(*, conn: BaseDBAsyncClient, user_id: str, plan: str, ends_at: datetime | None) -> bool:
    """Start `plan` for the user at now(); False when no plan has that name."""
    rows = await conn.execute_query_dict(START_SQL, [user_id, ends_at, plan])
    return bool(rows)
