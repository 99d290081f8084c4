"""Subscriptions: a user's plan is their active subscription's plan, else free.

"Active" is evaluated at read time (`status = 'active'`, started, `ends_at` absent or in
the future), so a subscription that ends downgrades its user at once with no job running;
the cached user context carries `ends_at` and the request guard compares it with now.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360 import reference
from manas360.errors import ValidationError

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


async def set_plan(conn: BaseDBAsyncClient, *, user_id: str, plan: str, ends_at: datetime | None) -> None:
    """End the user's current subscription and, unless `plan` is free, start a new one now.

    "Now" is PostgreSQL's transaction time, the clock every reader of ACTIVE_PLAN_JOIN
    compares with: a worker whose clock runs ahead can never start a plan in the future
    (which would read as free until that moment, and be cached so).
    """
    if ends_at is not None:
        rows = await conn.execute_query_dict("SELECT $1::timestamptz <= now() AS past", [ends_at])
        if rows[0]["past"]:
            raise ValidationError({"ends_at": "must be in the future"})
    await conn.execute_query(
        'UPDATE "user_subscriptions" '
        'SET "status" = \'cancelled\', "ends_at" = LEAST(COALESCE("ends_at", now()), now()) '
        'WHERE "user_id" = $1 AND "status" = \'active\' AND ("ends_at" IS NULL OR "ends_at" > now())', [user_id])
    if plan == reference.FREE_PLAN:
        return
    rows = await conn.execute_query_dict(
        'INSERT INTO "user_subscriptions" ("id", "user_id", "plan_id", "status", "starts_at", "ends_at") '
        'SELECT gen_random_uuid(), $1, "id", \'active\', now(), $2 FROM "subscription_plans" WHERE "name" = $3 '
        'RETURNING "id"', [user_id, ends_at, plan])
    if not rows:
        raise ValidationError({"plan": f"unknown plan {plan!r}"})
