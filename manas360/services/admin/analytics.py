"""Platform analytics for administrators: live counts, one query each."""

from __future__ import annotations

from typing import Any

from manas360.db import Database
from manas360.queries.admin import analytics as analytics_queries
from manas360.services.admin import audit


async def summary(*, db: Database) -> dict[str, Any]:
    """Users by plan and by role; logins, failed logins and lockouts in the last 24 hours."""
    conn = db.connection
    by_role = await analytics_queries.users_by_role(conn=conn)
    by_plan = await analytics_queries.users_by_plan(conn=conn)
    activity = await analytics_queries.logins_last_24h(conn=conn)
    lockouts = await analytics_queries.count_actions_last_24h(conn=conn, action=audit.ACCOUNT_LOCKED)
    plans = await analytics_queries.plan_names(conn=conn)
    plan_counts = {row.name: row.n for row in by_plan}
    return {
        "users": {
            "total": sum(row.n for row in by_role),
            "by_role": {row.name: row.n for row in by_role},
            "by_plan": {name: plan_counts.get(name, 0) for name in plans},
        },
        "last_24h": {"logins": activity.logins, "failed_logins": activity.failed, "lockouts": lockouts},
    }
