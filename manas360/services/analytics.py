"""Platform analytics for administrators: live counts, one query each."""

from __future__ import annotations

from typing import Any

from tortoise import connections

from manas360.services import audit
from manas360.services.subscriptions import ACTIVE_PLAN_JOIN


async def summary() -> dict[str, Any]:
    """Users by plan and by role; logins, failed logins and lockouts in the last 24 hours."""
    conn = connections.get("default")
    by_role = await conn.execute_query_dict(
        'SELECT r."name", count(u."id") AS "n" FROM "roles" r '
        'LEFT JOIN "user_accounts" u ON u."role_id" = r."id" AND u."deleted_at" IS NULL '
        'GROUP BY r."name", r."privilege_level" ORDER BY r."privilege_level"')
    by_plan = await conn.execute_query_dict(
        f'SELECT COALESCE(p."name", \'free\') AS "name", count(*) AS "n" FROM "user_accounts" u '
        f'{ACTIVE_PLAN_JOIN} WHERE u."deleted_at" IS NULL GROUP BY 1')
    activity = await conn.execute_query_dict(
        'SELECT count(*) FILTER (WHERE "success") AS "logins", count(*) FILTER (WHERE NOT "success") AS "failed" '
        'FROM "login_attempts" WHERE "created_at" > now() - interval \'24 hours\'')
    lockouts = await conn.execute_query_dict(
        'SELECT count(*) AS "n" FROM "audit_logs" WHERE "action" = $1 '
        'AND "created_at" > now() - interval \'24 hours\'', [audit.ACCOUNT_LOCKED])
    plans = await conn.execute_query_dict('SELECT "name" FROM "subscription_plans" ORDER BY "tier"')
    plan_counts = {row["name"]: row["n"] for row in by_plan}
    return {
        "users": {
            "total": sum(row["n"] for row in by_role),
            "by_role": {row["name"]: row["n"] for row in by_role},
            "by_plan": {row["name"]: plan_counts.get(row["name"], 0) for row in plans},
        },
        "last_24h": {"logins": activity[0]["logins"], "failed_logins": activity[0]["failed"],
                     "lockouts": lockouts[0]["n"]},
    }
