"""Subscriptions: a user's plan is their active subscription's plan, else free.

"Active" is evaluated at read time (`status = 'active'`, started, `ends_at` absent or in
the future), so a subscription that ends downgrades its user at once with no job running;
the cached user context carries `ends_at` and the request guard compares it with now.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.errors import ValidationError
from manas360.queries.access import subscriptions as subscription_queries
from manas360.services.access import catalog_defaults as reference


async def set_plan(conn: BaseDBAsyncClient, *, user_id: str, plan: str, ends_at: datetime | None) -> None:
    """End the user's current subscription and, unless `plan` is free, start a new one now.

    "Now" is PostgreSQL's transaction time, the clock every reader of the active plan
    (manas360.queries.access.subscriptions.ACTIVE_PLAN_JOIN) compares with: a worker whose clock
    runs ahead can never start a plan in the future (which would read as free until that
    moment, and be cached so).
    """
    if ends_at is not None and await subscription_queries.is_past(conn=conn, moment=ends_at):
        raise ValidationError({"ends_at": "must be in the future"})
    await subscription_queries.cancel_active(conn=conn, user_id=user_id)
    if plan == reference.FREE_PLAN:
        return
    if not await subscription_queries.start_subscription(conn=conn, user_id=user_id, plan=plan, ends_at=ends_at):
        raise ValidationError({"plan": f"unknown plan {plan!r}"})
