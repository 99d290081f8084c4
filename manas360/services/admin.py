"""Administration of users: listing, detail, role and subscription changes, unlocks and
session revocation, each write audited and committed in PostgreSQL before Redis is told.

Escalation rule (API.md): an actor may change a user's role only if the actor's level is
above the target's current level and above the new role's level; a superadmin (100) may
assign any role, superadmin included, to a user below 100. Nobody changes their own role
and no superadmin's role changes through the API. Every refusal is
PrivilegeEscalationPrevented. The other writes on a user (subscription, unlock, revoke)
follow the same "only on users below you" rule.

Listing reads the live tables, not mv_users_with_subscription: an administrator who has
just changed a role must see it in the list, and the keyset query on
(created_at, id) is an index range scan of at most `limit` rows; the view would be up to
one refresh interval stale for no measurable gain at this volume.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from manas360 import reference
from manas360.cursors import decode_position, encode_cursor
from manas360.errors import NotFound, PrivilegeEscalationPrevented, ValidationError
from manas360.services import audit, subscriptions, users
from manas360.services.clock import iso
from manas360.services.users import User, get_user

ROLE_CHANGED = "admin.role_changed"
SUBSCRIPTION_CHANGED = "admin.subscription_changed"

@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    privilege_level: int
    ip: str = ""


@dataclass(frozen=True, slots=True)
class Listing:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor}


async def list_users(*, limit: int, cursor: str | None, q: str | None) -> Listing:
    """Users newest first; the cursor is the last row's (created_at, id), so rows inserted
    while paging never shift or repeat a page."""
    filters, values = [], []
    if cursor:
        created_at, user_id = decode_position(cursor, arity=2)
        try:
            # We only issue UTC times; converting here also catches offsets that push a date
            # past year 1..9999 (asyncpg would overflow converting it: a 500).
            when = datetime.fromisoformat(created_at)
            if when.utcoffset() is None:
                raise ValueError("naive")
            values += [when.astimezone(timezone.utc), str(uuid.UUID(user_id))]
        except (TypeError, ValueError, OverflowError):
            raise ValidationError({"cursor": "is not a valid cursor"}) from None
        filters.append('(u."created_at", u."id") < ($1, $2)')
    if q:
        values.append(f"%{_escape_like(q.lower())}%")
        n = len(values)
        filters.append(f'(LOWER(u."email") LIKE ${n} OR LOWER(u."display_name") LIKE ${n})')
    where = " AND ".join(filters) or "TRUE"
    sql = users.USER_SQL.format(where=where) + f' ORDER BY u."created_at" DESC, u."id" DESC LIMIT {int(limit) + 1}'
    rows = await connections.get("default").execute_query_dict(sql, values)
    page = [users.user_from_row(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last["created_at"].isoformat(), str(last["id"])])
    return Listing(items=[user.as_dict() for user in page], next_cursor=next_cursor)


async def get_user_detail(*, user_id: str) -> dict[str, Any]:
    """A user as administrators see them: <User> plus locked_until and subscription."""
    user = await _require_user(user_id)
    rows = await connections.get("default").execute_query_dict(
        f'SELECT u."locked_until", s."status", s."ends_at", s."starts_at" FROM "user_accounts" u '
        f'{subscriptions.ACTIVE_PLAN_JOIN} WHERE u."id" = $1', [user_id])
    row = rows[0]
    subscription = {"plan": user.plan, "status": row["status"] or "active", "starts_at": iso(row["starts_at"]),
                    "ends_at": iso(row["ends_at"])}
    return {**user.as_dict(), "locked_until": iso(row["locked_until"]), "subscription": subscription}


async def change_role(*, actor: Actor, user_id: str, role: str, role_levels: dict[str, int]) -> User:
    """Assign `role` under the escalation rule; audited; returns the updated user."""
    if role not in role_levels:
        raise ValidationError({"role": f"unknown role {role!r}"})
    async with in_transaction() as conn:
        target = await _lock_target(conn, user_id=user_id)
        _check_escalation(actor=actor, target=target, new_level=role_levels[role])
        await conn.execute_query(
            'UPDATE "user_accounts" SET "role_id" = (SELECT "id" FROM "roles" WHERE "name" = $2), '
            '"updated_at" = now() WHERE "id" = $1', [user_id, role])
        await audit.record(conn, action=ROLE_CHANGED, actor_id=actor.user_id, target_user_id=user_id, ip=actor.ip,
                           before={"role": target.role}, after={"role": role})
        return await get_user(user_id=user_id, conn=conn)


async def change_subscription(*, actor: Actor, user_id: str, plan: str, ends_at: datetime | None) -> User:
    """Put the user on `plan` from now until `ends_at` (open-ended when None); audited."""
    async with in_transaction() as conn:
        target = await _lock_target(conn, user_id=user_id)
        _check_acts_below(actor=actor, target=target)
        await subscriptions.set_plan(conn, user_id=user_id, plan=plan, ends_at=ends_at)
        await audit.record(conn, action=SUBSCRIPTION_CHANGED, actor_id=actor.user_id, target_user_id=user_id,
                           ip=actor.ip, before={"plan": target.plan},
                           after={"plan": plan, "ends_at": iso(ends_at)})
        return await get_user(user_id=user_id, conn=conn)


async def require_acts_below(*, actor: Actor, user_id: str) -> User:
    """The target user, after checking `actor` may act on them (unlock, revoke)."""
    target = await _require_user(user_id)
    _check_acts_below(actor=actor, target=target)
    return target


def _as_user_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound() from None  # not an id we could have issued


async def _require_user(user_id: str, *, conn=None) -> User:
    user = await get_user(user_id=_as_user_id(user_id), conn=conn)
    if user is None:
        raise NotFound()
    return user


async def _lock_target(conn, *, user_id: str) -> User:
    """The target user, read after locking their row: concurrent administrative writes on
    one user are serialised and each sees the previous one's result."""
    user_id = _as_user_id(user_id)
    await conn.execute_query('SELECT 1 FROM "user_accounts" WHERE "id" = $1 FOR UPDATE', [user_id])
    return await _require_user(user_id, conn=conn)


def _check_escalation(*, actor: Actor, target: User, new_level: int) -> None:
    if actor.user_id == target.id:
        raise PrivilegeEscalationPrevented("You cannot change your own role")
    if target.privilege_level >= reference.ROLES[reference.SUPERADMIN_ROLE]:
        raise PrivilegeEscalationPrevented("A superadmin's role is changed only from the command line")
    if actor.privilege_level >= reference.ROLES[reference.SUPERADMIN_ROLE]:
        return
    if not (actor.privilege_level > target.privilege_level and actor.privilege_level > new_level):
        raise PrivilegeEscalationPrevented("You can only assign roles below your own to users below you")


def _check_acts_below(*, actor: Actor, target: User) -> None:
    if actor.user_id != target.id and actor.privilege_level > target.privilege_level:
        return
    raise PrivilegeEscalationPrevented("You can only act on users below your own privilege level")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
