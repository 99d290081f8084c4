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

from manas360.db import Database
from manas360.errors import NotFound, PrivilegeEscalationPrevented, ValidationError
from manas360.queries.access import rbac as rbac_queries
from manas360.queries.access.rbac import Mapping
from manas360.services.access.catalog import Catalog, CatalogHolder
from manas360.services.access.entitlements import reference_changed
from manas360.services.accounts.users import User
from manas360.services.admin import audit
from manas360.services.admin.users import Acting, Actor, lock_actor_and_target
from manas360.store import Store

ROLE_PERMISSIONS_CHANGED = "admin.role_permissions_changed"
PLAN_FEATURES_CHANGED = "admin.plan_features_changed"


def roles_view(catalog: Catalog) -> list[dict[str, Any]]:
    return [role_view(catalog, name) for name in sorted(catalog.role_levels, key=catalog.role_levels.__getitem__)]


def role_view(catalog: Catalog, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "privilege_level": catalog.level_of(name),
        "permissions": sorted(catalog.permissions_of(name)),
    }


def plans_view(catalog: Catalog) -> list[dict[str, Any]]:
    return [plan_view(catalog, name) for name in catalog.plans]


def plan_view(catalog: Catalog, name: str) -> dict[str, Any]:
    plan = catalog.plans[name]
    return {
        "name": plan.name,
        "display_name": plan.display_name,
        "tier": plan.tier,
        "price_cents": plan.price_cents,
        "features": sorted(plan.features),
    }


async def set_role_permissions(
    *, db: Database, store: Store, catalog: CatalogHolder, actor: Actor, role: str, permissions: list[str]
) -> dict[str, Any]:
    """Replace the permissions of `role` under the escalation rule (audited), then tell
    every worker; returns the role as it is now.

    Escalation rule for reference data: the actor's level (re-read under lock) must be above
    the role's, and nobody grants a role a permission they do not hold themselves.
    """
    async with db.transaction() as conn:
        acting, _ = await _lock_actor(conn, actor=actor, permission="roles.manage")
        level = await rbac_queries.role_level(conn=conn, role=role)
        if level is not None and not acting.privilege_level > level:
            raise PrivilegeEscalationPrevented("You can only change the permissions of roles below your own")
        before = await _replace_mapping(
            conn,
            actor=actor,
            mapping=rbac_queries.ROLE_PERMISSIONS,
            owner=role,
            items=permissions,
            field="permissions",
            action=ROLE_PERMISSIONS_CHANGED,
        )
        granted = set(permissions) - set(before) - acting.permissions
        if granted:
            raise PrivilegeEscalationPrevented(
                f"You cannot grant permissions you do not hold: {', '.join(sorted(granted))}"
            )
    return role_view(await reference_changed(store=store, catalog=catalog), role)


async def set_plan_features(
    *, db: Database, store: Store, catalog: CatalogHolder, actor: Actor, plan: str, features: list[str]
) -> dict[str, Any]:
    """Replace the features of `plan` (audited), then tell every worker; returns the plan."""
    async with db.transaction() as conn:
        await _lock_actor(conn, actor=actor, permission="plans.manage")
        await _replace_mapping(
            conn,
            actor=actor,
            mapping=rbac_queries.PLAN_FEATURES,
            owner=plan,
            items=features,
            field="features",
            action=PLAN_FEATURES_CHANGED,
        )
    return plan_view(await reference_changed(store=store, catalog=catalog), plan)


async def _lock_actor(conn: BaseDBAsyncClient, *, actor: Actor, permission: str) -> tuple[Acting, User]:
    # The actor's own row is both "actor" and "target" here: only the actor is locked and read.
    return await lock_actor_and_target(conn, actor=actor, user_id=actor.user_id, permission=permission)


async def _replace_mapping(
    conn: BaseDBAsyncClient, *, actor: Actor, mapping: Mapping, owner: str, items: list[str], field: str, action: str
) -> list[str]:
    """Replace the owner's items inside the caller's transaction; the items before."""
    wanted = sorted(set(items))
    owner_id = await rbac_queries.lock_owner(conn=conn, mapping=mapping, owner=owner)
    if owner_id is None:
        raise NotFound(f"No such {mapping.owner_table.rstrip('s').replace('_', ' ')}")
    known = await rbac_queries.items_named(conn=conn, mapping=mapping, names=wanted)
    unknown = sorted(set(wanted) - {row.name for row in known})
    if unknown:
        raise ValidationError({field: f"unknown: {', '.join(unknown)}"})
    before = await rbac_queries.linked_names(conn=conn, mapping=mapping, owner_id=owner_id)
    await rbac_queries.unlink_all(conn=conn, mapping=mapping, owner_id=owner_id)
    await rbac_queries.link(conn=conn, mapping=mapping, owner_id=owner_id, item_ids=[row.id for row in known])
    await audit.record(
        conn,
        action=action,
        actor_id=actor.user_id,
        target_user_id=None,
        ip=actor.ip,
        before={"name": owner, field: before},
        after={"name": owner, field: wanted},
    )
    return before
