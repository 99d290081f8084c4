"""Reference mappings: roles -> permissions (role_permissions), plans -> features (plan_features)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient


@dataclass(frozen=True, slots=True)
class Mapping:
    """A named owner's set of named items, held in a link table."""

    owner_table: str
    link_table: str
    owner_col: str
    item_table: str
    item_col: str


ROLE_PERMISSIONS = Mapping(
    owner_table="roles",
    link_table="role_permissions",
    owner_col="role_id",
    item_table="permissions",
    item_col="permission_id",
)
PLAN_FEATURES = Mapping(
    owner_table="subscription_plans",
    link_table="plan_features",
    owner_col="plan_id",
    item_table="features",
    item_col="feature_id",
)

ROLE_LEVEL_SQL = 'SELECT "privilege_level" FROM "roles" WHERE "name" = $1'
LOCK_OWNER_SQL = 'SELECT "id" FROM "{owner_table}" WHERE "name" = $1 FOR UPDATE'
ITEMS_NAMED_SQL = 'SELECT "id", "name" FROM "{item_table}" WHERE "name" = ANY($1::text[])'
LINKED_NAMES_SQL = (
    'SELECT i."name" FROM "{link_table}" l JOIN "{item_table}" i ON i."id" = l."{item_col}" '
    'WHERE l."{owner_col}" = $1 ORDER BY i."name"'
)
UNLINK_ALL_SQL = 'DELETE FROM "{link_table}" WHERE "{owner_col}" = $1'
LINK_SQL = 'INSERT INTO "{link_table}" ("{owner_col}", "{item_col}") SELECT $1, unnest($2::int[])'


def _sql(template: str, mapping: Mapping) -> str:
    return template.format(
        owner_table=mapping.owner_table,
        link_table=mapping.link_table,
        owner_col=mapping.owner_col,
        item_table=mapping.item_table,
        item_col=mapping.item_col,
    )


async def role_level(*, conn: BaseDBAsyncClient, role: str) -> int | None:
    """The role's privilege level, or None when there is no such role."""
    rows = await conn.execute_query_dict(ROLE_LEVEL_SQL, [role])
    level: int | None = rows[0]["privilege_level"] if rows else None  # Tortoise's rows are untyped dicts
    return level


async def lock_owner(*, conn: BaseDBAsyncClient, mapping: Mapping, owner: str) -> int | None:
    """Lock the owner row by name (FOR UPDATE); its id, or None when there is none."""
    rows = await conn.execute_query_dict(_sql(LOCK_OWNER_SQL, mapping), [owner])
    owner_id: int | None = rows[0]["id"] if rows else None
    return owner_id


class Item(NamedTuple):
    id: int
    name: str


async def items_named(*, conn: BaseDBAsyncClient, mapping: Mapping, names: list[str]) -> list[Item]:
    """(id, name) of the items that exist among `names`."""
    return [Item(**row) for row in await conn.execute_query_dict(_sql(ITEMS_NAMED_SQL, mapping), [names])]


async def linked_names(*, conn: BaseDBAsyncClient, mapping: Mapping, owner_id: int) -> list[str]:
    """The owner's item names, sorted."""
    rows = await conn.execute_query_dict(_sql(LINKED_NAMES_SQL, mapping), [owner_id])
    return [row["name"] for row in rows]


async def unlink_all(*, conn: BaseDBAsyncClient, mapping: Mapping, owner_id: int) -> None:
    await conn.execute_query(_sql(UNLINK_ALL_SQL, mapping), [owner_id])


async def link(*, conn: BaseDBAsyncClient, mapping: Mapping, owner_id: int, item_ids: list[int]) -> None:
    await conn.execute_query(_sql(LINK_SQL, mapping), [owner_id, item_ids])
