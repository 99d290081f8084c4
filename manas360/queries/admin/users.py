"""Administration of users: the admin listing and detail, role and status writes, and the
actor/target row locks (user_accounts, roles, role_permissions, permissions)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries.access.subscriptions import ACTIVE_PLAN_JOIN
from manas360.queries.accounts.users import USER_SQL, UserRow

FORCE_CUSTOM_PLAN_SQL = "SET LOCAL plan_cache_mode = force_custom_plan"
USER_DETAIL_SQL = (
    f'SELECT u."locked_until", s."status", s."ends_at", s."starts_at" FROM "user_accounts" u '
    f'{ACTIVE_PLAN_JOIN} WHERE u."id" = $1'
)
SET_ROLE_SQL = (
    'UPDATE "user_accounts" SET "role_id" = (SELECT "id" FROM "roles" WHERE "name" = $2), '
    '"updated_at" = now() WHERE "id" = $1'
)
SET_STATUS_SQL = 'UPDATE "user_accounts" SET "status" = $2, "updated_at" = now() WHERE "id" = $1'
LOCK_USER_ROWS_SQL = 'SELECT 1 FROM "user_accounts" WHERE "id" = ANY($1::uuid[]) ORDER BY "id" FOR UPDATE'
ACTING_SQL = (
    'SELECT r."privilege_level", u."status", u."deleted_at" IS NULL AS "live", '
    'array_remove(array_agg(pm."name"), NULL) AS "permissions" FROM "user_accounts" u '
    'JOIN "roles" r ON r."id" = u."role_id" '
    'LEFT JOIN "role_permissions" rp ON rp."role_id" = r."id" '
    'LEFT JOIN "permissions" pm ON pm."id" = rp."permission_id" '
    'WHERE u."id" = $1 GROUP BY r."privilege_level", u."status", u."deleted_at"'
)


async def force_custom_plan(*, conn: BaseDBAsyncClient) -> None:
    """Plan every statement of this transaction for its own parameters (no generic plan)."""
    await conn.execute_query(FORCE_CUSTOM_PLAN_SQL)


async def list_users(
    *, conn: BaseDBAsyncClient, before: tuple[datetime, str] | None, contains: str | None, limit: int
) -> list[UserRow]:
    """USER_SQL rows newest first, (created_at, id) below `before` when given, whose lower-cased
    email or display name contains `contains` when given; at most `limit` rows."""
    filters: list[str] = []
    values: list[object] = []
    if before is not None:
        values += [before[0], before[1]]
        filters.append('(u."created_at", u."id") < ($1, $2)')
    if contains:
        values.append(f"%{_escape_like(contains)}%")
        n = len(values)
        filters.append(f'(LOWER(u."email") LIKE ${n} OR LOWER(u."display_name") LIKE ${n})')
    where = " AND ".join(filters) or "TRUE"
    sql = USER_SQL.format(where=where) + f' ORDER BY u."created_at" DESC, u."id" DESC LIMIT {int(limit)}'
    return [UserRow(**row) for row in await conn.execute_query_dict(sql, values)]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class UserDetail(NamedTuple):
    locked_until: datetime | None
    status: str | None
    """The active subscription's status (None on the free plan), and its period."""
    ends_at: datetime | None
    starts_at: datetime | None


class ActingRow(NamedTuple):
    privilege_level: int
    status: str
    live: bool
    permissions: list[str]


async def user_detail(*, conn: BaseDBAsyncClient, user_id: str) -> UserDetail:
    """locked_until and the active subscription's status, starts_at, ends_at (or NULLs) of a
    user the caller has just read (deleted or not, the row is there)."""
    rows = await conn.execute_query_dict(USER_DETAIL_SQL, [user_id])
    return UserDetail(**rows[0])


async def set_role(*, conn: BaseDBAsyncClient, user_id: str, role: str) -> None:
    await conn.execute_query(SET_ROLE_SQL, [user_id, role])


async def set_status(*, conn: BaseDBAsyncClient, user_id: str, status: str) -> None:
    await conn.execute_query(SET_STATUS_SQL, [user_id, status])


async def lock_user_rows(*, conn: BaseDBAsyncClient, user_ids: list[str]) -> None:
    """Lock these users' rows FOR UPDATE, in the order given (callers sort by id)."""
    await conn.execute_query(LOCK_USER_ROWS_SQL, [user_ids])


async def fetch_acting(*, conn: BaseDBAsyncClient, user_id: str) -> ActingRow | None:
    """The user's privilege_level, status, `live` and permissions as PostgreSQL has them now."""
    rows = await conn.execute_query_dict(ACTING_SQL, [user_id])
    return ActingRow(**rows[0]) if rows else None
