"""Roles, permissions, plans and features: reading them and changing the mappings.

A mapping change commits in PostgreSQL (audited, under the escalation rule for roles),
then bumps the reference version in Redis, which every worker sees on its next request
(the guard reads the version in its round trip) and on the change channel. If Redis is
down at that moment the change still commits; workers pick it up on their periodic
version poll once Redis answers, or at once if Redis lost its data (the version then
reads 0, which differs from theirs).
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from manas360.errors import NotFound, PrivilegeEscalationPrevented, ValidationError
from manas360.services import audit
from manas360.services.admin import Acting, Actor, lock_actor_and_target
from manas360.services.catalog import Catalog, CatalogHolder
from manas360.services.entitlements import reference_changed
from manas360.services.users import User
from manas360.store import Store

ROLE_PERMISSIONS_CHANGED = "admin.role_permissions_changed"
PLAN_FEATURES_CHANGED = "admin.plan_features_changed"


def roles_view(catalog: Catalog) -> list[dict[str, Any]]:
    return [role_view(catalog, name) for name in sorted(catalog.role_levels, key=catalog.role_levels.__getitem__)]


def role_view(catalog: Catalog, name: str) -> dict[str, Any]:
    return {"name": name, "privilege_level": catalog.level_of(name),
            "permissions": sorted(catalog.permissions_of(name))}


def plans_view(catalog: Catalog) -> list[dict[str, Any]]:
    return [plan_view(catalog, name) for name in catalog.plans]


def plan_view(catalog: Catalog, name: str) -> dict[str, Any]:
    plan = catalog.plans[name]
    return {"name": plan.name, "display_name": plan.display_name, "tier": plan.tier,
            "price_cents": plan.price_cents, "features": sorted(plan.features)}


async def set_role_permissions(*, store: Store, catalog: CatalogHolder, actor: Actor, role: str,
                               permissions: list[str]) -> dict[str, Any]:
    """Replace the permissions of `role` under the escalation rule (audited), then tell
    every worker; returns the role as it is now.

    Escalation rule for reference data: the actor's level (re-read under lock) must be above
    the role's, and nobody grants a role a permission they do not hold themselves.
    """
    async with in_transaction() as conn:
        acting, _ = await _lock_actor(conn, actor=actor, permission="roles.manage")
        levels = await conn.execute_query_dict('SELECT "privilege_level" FROM "roles" WHERE "name" = $1', [role])
        if levels and not acting.privilege_level > levels[0]["privilege_level"]:
            raise PrivilegeEscalationPrevented("You can only change the permissions of roles below your own")
        before = await _replace_mapping(conn, actor=actor, owner_table="roles", owner=role,
                                        link_table="role_permissions", owner_col="role_id",
                                        item_table="permissions", item_col="permission_id", items=permissions,
                                        field="permissions", action=ROLE_PERMISSIONS_CHANGED)
        granted = set(permissions) - set(before) - acting.permissions
        if granted:
            raise PrivilegeEscalationPrevented(
                f"You cannot grant permissions you do not hold: {', '.join(sorted(granted))}")
    return role_view(await reference_changed(store=store, catalog=catalog), role)


async def set_plan_features(*, store: Store, catalog: CatalogHolder, actor: Actor, plan: str,
                            features: list[str]) -> dict[str, Any]:
    """Replace the features of `plan` (audited), then tell every worker; returns the plan."""
    async with in_transaction() as conn:
        await _lock_actor(conn, actor=actor, permission="plans.manage")
        await _replace_mapping(conn, actor=actor, owner_table="subscription_plans", owner=plan,
                               link_table="plan_features", owner_col="plan_id", item_table="features",
                               item_col="feature_id", items=features, field="features",
                               action=PLAN_FEATURES_CHANGED)
    return plan_view(await reference_changed(store=store, catalog=catalog), plan)


async def _lock_actor(conn: BaseDBAsyncClient, *, actor: Actor, permission: str) -> tuple[Acting, User]:
    # The actor's own row is both "actor" and "target" here: only the actor is locked and read.
    return await lock_actor_and_target(conn, actor=actor, user_id=actor.user_id, permission=permission)


async def _replace_mapping(conn: BaseDBAsyncClient, *, actor: Actor, owner_table: str, owner: str,
                           link_table: str, owner_col: str, item_table: str, item_col: str, items: list[str],
                           field: str, action: str) -> list[str]:
    """Replace the owner's items inside the caller's transaction; the items before."""
    wanted = sorted(set(items))
    owners = await conn.execute_query_dict(
        f'SELECT "id" FROM "{owner_table}" WHERE "name" = $1 FOR UPDATE', [owner])
    if not owners:
        raise NotFound(f"No such {owner_table.rstrip('s').replace('_', ' ')}")
    owner_id = owners[0]["id"]
    known = await conn.execute_query_dict(
        f'SELECT "id", "name" FROM "{item_table}" WHERE "name" = ANY($1::text[])', [wanted])
    unknown = sorted(set(wanted) - {row["name"] for row in known})
    if unknown:
        raise ValidationError({field: f"unknown: {', '.join(unknown)}"})
    before = await conn.execute_query_dict(
        f'SELECT i."name" FROM "{link_table}" l JOIN "{item_table}" i ON i."id" = l."{item_col}" '
        f'WHERE l."{owner_col}" = $1 ORDER BY i."name"', [owner_id])
    await conn.execute_query(f'DELETE FROM "{link_table}" WHERE "{owner_col}" = $1', [owner_id])
    await conn.execute_query(
        f'INSERT INTO "{link_table}" ("{owner_col}", "{item_col}") SELECT $1, unnest($2::int[])',
        [owner_id, [row["id"] for row in known]])
    await audit.record(conn, action=action, actor_id=actor.user_id, target_user_id=None, ip=actor.ip,
                       before={"name": owner, field: [row["name"] for row in before]},
                       after={"name": owner, field: wanted})
    return [row["name"] for row in before]
