"""Platform analytics: live counts over user_accounts, roles, subscriptions, login_attempts, audit_logs."""

from __future__ import annotations

from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries.access.subscriptions import ACTIVE_PLAN_JOIN

USERS_BY_ROLE_SQL = (
    'SELECT r."name", count(u."id") AS "n" FROM "roles" r '
    'LEFT JOIN "user_accounts" u ON u."role_id" = r."id" AND u."deleted_at" IS NULL '
    'GROUP BY r."name", r."privilege_level" ORDER BY r."privilege_level"'
)
USERS_BY_PLAN_SQL = (
    f'SELECT COALESCE(p."name", \'free\') AS "name", count(*) AS "n" FROM "user_accounts" u '
    f'{ACTIVE_PLAN_JOIN} WHERE u."deleted_at" IS NULL GROUP BY 1'
)
LOGINS_24H_SQL = (
    'SELECT count(*) FILTER (WHERE "success") AS "logins", count(*) FILTER (WHERE NOT "success") AS "failed" '
    'FROM "login_attempts" WHERE "created_at" > now() - interval \'24 hours\''
)
ACTIONS_24H_SQL = (
    'SELECT count(*) AS "n" FROM "audit_logs" WHERE "action" = $1 AND "created_at" > now() - interval \'24 hours\''
)
PLAN_NAMES_SQL = 'SELECT "name" FROM "subscription_plans" ORDER BY "tier"'


class Count(NamedTuple):
    name: str
    n: int


class Logins(NamedTuple):
    logins: int
    failed: int


async def users_by_role(*, conn: BaseDBAsyncClient) -> list[Count]:
    """(name, n) per role, by privilege level: live users holding it."""
    return [Count(**row) for row in await conn.execute_query_dict(USERS_BY_ROLE_SQL)]


async def users_by_plan(*, conn: BaseDBAsyncClient) -> list[Count]:
    """(name, n) per effective plan with at least one live user."""
    return [Count(**row) for row in await conn.execute_query_dict(USERS_BY_PLAN_SQL)]


async def logins_last_24h(*, conn: BaseDBAsyncClient) -> Logins:
    """(logins, failed) login attempts in the last 24 hours."""
    rows = await conn.execute_query_dict(LOGINS_24H_SQL)
    return Logins(**rows[0])


async def count_actions_last_24h(*, conn: BaseDBAsyncClient, action: str) -> int:
    rows = await conn.execute_query_dict(ACTIONS_24H_SQL, [action])
    n: int = rows[0]["n"]
    return n


async def plan_names(*, conn: BaseDBAsyncClient) -> list[str]:
    """Every plan, in tier order."""
    return [row["name"] for row in await conn.execute_query_dict(PLAN_NAMES_SQL)]
