"""The reference catalog: roles, permissions, subscription_plans, features and their mappings, as read."""

from __future__ import annotations

from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

ROLES_SQL = (
    'SELECT r."name", r."privilege_level", array_remove(array_agg(p."name"), NULL) AS "permissions" '
    'FROM "roles" r LEFT JOIN "role_permissions" rp ON rp."role_id" = r."id" '
    'LEFT JOIN "permissions" p ON p."id" = rp."permission_id" GROUP BY r."id"'
)
PLANS_SQL = (
    'SELECT s."name", s."display_name", s."tier", s."price_cents", '
    'array_remove(array_agg(f."name"), NULL) AS "features" '
    'FROM "subscription_plans" s LEFT JOIN "plan_features" pf ON pf."plan_id" = s."id" '
    'LEFT JOIN "features" f ON f."id" = pf."feature_id" GROUP BY s."id" ORDER BY s."tier"'
)


class RoleRow(NamedTuple):
    name: str
    privilege_level: int
    permissions: list[str]


class PlanRow(NamedTuple):
    name: str
    display_name: str
    tier: int
    price_cents: int
    features: list[str]


async def roles_with_permissions(*, conn: BaseDBAsyncClient) -> list[RoleRow]:
    """(name, privilege_level, permissions) of every role."""
    return [RoleRow(**row) for row in await conn.execute_query_dict(ROLES_SQL)]


async def plans_with_features(*, conn: BaseDBAsyncClient) -> list[PlanRow]:
    """(name, display_name, tier, price_cents, features) of every plan, in tier order."""
    return [PlanRow(**row) for row in await conn.execute_query_dict(PLANS_SQL)]
