"""Administration of users: listing, detail, role and subscription changes, unlocks and
session revocation, each write audited and committed in PostgreSQL before Redis is told.

Escalation rule (docs/api.md): an actor may change a user's role only if the actor's level is
above the target's current level and above the new role's level; a superadmin (100) may
assign any role, superadmin included, to a user below 100. Nobody changes their own role
and no superadmin's role changes through the API. Every refusal is
PrivilegeEscalationPrevented. The other writes on a user (subscription, status, unlock,
revoke) follow the same "only on users below you" rule.

Every rule is checked inside the write's transaction, with the actor's and the target's
rows locked and the actor's level and permissions re-read from PostgreSQL: the level the
request's guard saw may be older than a demotion that committed since. Each service
commits first, then tells Redis (the target's cached context is dropped).

Listing reads the live tables, not mv_users_with_subscription: an administrator who has
just changed a role must see it in the list, and the keyset query on
(created_at, id) is an index range scan of at most `limit` rows; the view would be up to
one refresh interval stale for no measurable gain at this volume.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.clock import iso
from manas360.cursors import Listing, decode_position, encode_cursor
from manas360.db import Database
from manas360.errors import (
    AccountDisabled,
    InsufficientPrivileges,
    NotFound,
    PermissionDenied,
    PrivilegeEscalationPrevented,
    ValidationError,
)
from manas360.models import ACCOUNT_ACTIVE, ACCOUNT_DISABLED, ACCOUNT_PENDING_DELETION, ACCOUNT_STATUSES
from manas360.queries.access import rbac as rbac_queries
from manas360.queries.accounts import lifecycle as lifecycle_queries
from manas360.queries.accounts.users import UserRow
from manas360.queries.admin import users as admin_queries
from manas360.queries.auth import login as login_queries
from manas360.services.access import catalog_defaults as reference
from manas360.services.access import subscriptions
from manas360.services.access.entitlements import forget_user
from manas360.services.accounts import deletion, users
from manas360.services.accounts.users import User, get_user
from manas360.services.admin import audit
from manas360.services.auth import events
from manas360.services.auth import mfa_enrolment as mfa
from manas360.services.auth.events import Event, Revocation
from manas360.services.auth.lockout import unlock_account
from manas360.services.auth.sessions import Client
from manas360.services.auth.signout import revoke_all_sessions
from manas360.services.integration import webhooks
from manas360.settings import Settings
from manas360.store import Store

ROLE_CHANGED = "admin.role_changed"
SUBSCRIPTION_CHANGED = "admin.subscription_changed"
STATUS_CHANGED = "admin.status_changed"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for an administrative write (their level is re-read when it is checked)."""

    user_id: str
    ip: str = ""


@dataclass(frozen=True, slots=True)
class Acting:
    """The actor as PostgreSQL has them inside the write's transaction."""

    user_id: str
    privilege_level: int
    permissions: frozenset[str]


async def list_users(*, db: Database, limit: int, cursor: str | None, q: str | None) -> Listing:
    """Users newest first; the cursor is the last row's (created_at, id), so rows inserted
    while paging never shift or repeat a page."""
    before: tuple[datetime, str] | None = None
    if cursor:
        created_at, user_id = decode_position(cursor, arity=2)
        try:
            # We only issue UTC times; converting here also catches offsets that push a date
            # past year 1..9999 (asyncpg would overflow converting it: a 500).
            when = datetime.fromisoformat(created_at)
            if when.utcoffset() is None:
                raise ValueError("naive")
            before = (when.astimezone(UTC), str(uuid.UUID(user_id)))
        except (TypeError, ValueError, OverflowError):
            raise ValidationError({"cursor": "is not a valid cursor"}) from None
    contains = q.lower() if q else None
    if q:
        rows = await _search(db=db, before=before, contains=contains, limit=limit + 1)
    else:
        rows = await admin_queries.list_users(conn=db.connection, before=before, contains=contains, limit=limit + 1)
    page = [users.user_from_row(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last.created_at.isoformat(), str(last.id)])
    return Listing(items=[user.as_dict() for user in page], next_cursor=next_cursor)


async def _search(
    *, db: Database, before: tuple[datetime, str] | None, contains: str | None, limit: int
) -> list[UserRow]:
    # The best plan depends on the pattern: the trigram indexes for a rare substring, the
    # (created_at, id) index for a common one. A reused generic plan cannot know which and
    # took 150 ms at 100,000 users; planning each search for its own pattern takes < 1 ms.
    async with db.transaction() as conn:
        await admin_queries.force_custom_plan(conn=conn)
        return await admin_queries.list_users(conn=conn, before=before, contains=contains, limit=limit)


async def get_user_detail(*, db: Database, user_id: str) -> dict[str, Any]:
    """A user as administrators see them: <User> plus locked_until, locks and subscription.

    `locked_until` is the end of the account-wide lock, else of the latest per-source lock
    (null when none); `locks` lists the per-source locks (PostgreSQL's copy, which every lock
    of a known account has)."""
    user = await _require_user(user_id, conn=db.connection)
    conn = db.connection
    row = await admin_queries.user_detail(conn=conn, user_id=user.id)
    locks = await login_queries.source_locks(conn=conn, user_id=user.id)
    subscription = {
        "plan": user.plan,
        "status": row.status or "active",
        "starts_at": iso(row.starts_at),
        "ends_at": iso(row.ends_at),
    }
    locked_until = row.locked_until or (locks[0].locked_until if locks else None)
    return {
        **user.as_dict(),
        "locked_until": iso(locked_until),
        "subscription": subscription,
        "locks": [{"source": lock.source, "until": iso(lock.locked_until)} for lock in locks],
    }


async def change_role(*, db: Database, settings: Settings, store: Store, actor: Actor, user_id: str, role: str) -> User:
    """Assign `role` under the escalation rule, checked against the actor's level as it is
    now (re-read under lock); audited; the user's cached context is dropped after commit."""
    async with db.transaction() as conn:
        acting, target = await lock_actor_and_target(conn, actor=actor, user_id=user_id, permission="roles.assign")
        new_level = await _role_level(conn, role)
        _check_escalation(actor=acting, target=target, new_level=new_level)
        await admin_queries.set_role(conn=conn, user_id=target.id, role=role)
        await audit.record(
            conn,
            action=ROLE_CHANGED,
            actor_id=actor.user_id,
            target_user_id=target.id,
            ip=actor.ip,
            before={"role": target.role},
            after={"role": role},
        )
        await webhooks.user_changed(conn, settings=settings, user_id=target.id, event=webhooks.USER_UPDATED)
        user = await _require_user(target.id, conn=conn)
    await forget_user(store=store, user_id=user.id)
    return user


async def change_subscription(
    *, db: Database, settings: Settings, store: Store, actor: Actor, user_id: str, plan: str, ends_at: datetime | None
) -> User:
    """Put the user on `plan` from now (PostgreSQL's clock) until `ends_at` (open-ended when
    None); audited; returns the user as they are after the change."""
    async with db.transaction() as conn:
        acting, target = await lock_actor_and_target(
            conn, actor=actor, user_id=user_id, permission="subscriptions.manage"
        )
        _check_acts_below(actor=acting, target=target)
        await subscriptions.set_plan(conn, user_id=target.id, plan=plan, ends_at=ends_at)
        await audit.record(
            conn,
            action=SUBSCRIPTION_CHANGED,
            actor_id=actor.user_id,
            target_user_id=target.id,
            ip=actor.ip,
            before={"plan": target.plan},
            after={"plan": plan, "ends_at": iso(ends_at)},
        )
        await webhooks.user_changed(conn, settings=settings, user_id=target.id, event=webhooks.USER_UPDATED)
        # Read in the same transaction: the new subscription starts at the transaction's
        # now() (set_plan), which is also the now() this read compares with.
        user = await _require_user(target.id, conn=conn)
    await forget_user(store=store, user_id=user.id)
    return user


async def set_status(
    *, db: Database, settings: Settings, store: Store, actor: Actor, user_id: str, status: str
) -> User:
    """Enable or disable an account, schedule its deletion or cancel one (only below the
    actor's level). Transitions: active and disabled both ways; either to pending_deletion
    (no cancel link is mailed: only an administrator cancels it); pending_deletion back to the
    status it had before. Disabling and scheduling drop the cached context at once (the next
    request of any token answers AccountDisabled / AccountPendingDeletion) and revoke every
    session and access token of the user."""
    if status not in ACCOUNT_STATUSES:
        raise ValidationError({"status": f"must be one of {', '.join(ACCOUNT_STATUSES)}"})
    async with db.transaction() as conn:
        acting, target = await lock_actor_and_target(conn, actor=actor, user_id=user_id, permission="users.write")
        _check_acts_below(actor=acting, target=target)
        if status == ACCOUNT_PENDING_DELETION or target.status == ACCOUNT_PENDING_DELETION:
            user, revoked = await _deletion_status(conn, settings=settings, actor=actor, target=target, status=status)
        else:
            user, revoked = await _enable_or_disable(conn, settings=settings, actor=actor, target=target, status=status)
    await deletion.after_schedule(settings=settings, store=store, user_id=user.id, revoked=revoked)
    return user


async def _enable_or_disable(
    conn: BaseDBAsyncClient, *, settings: Settings, actor: Actor, target: User, status: str
) -> tuple[User, Revocation | None]:
    """Active and disabled, both ways; disabling is a security event."""
    if target.status != status:
        await admin_queries.set_status(conn=conn, user_id=target.id, status=status)
        await audit.record(
            conn,
            action=STATUS_CHANGED,
            actor_id=actor.user_id,
            target_user_id=target.id,
            ip=actor.ip,
            before={"status": target.status},
            after={"status": status},
        )
        await webhooks.user_changed(conn, settings=settings, user_id=target.id, event=webhooks.USER_UPDATED)
    revoked = None
    if status == ACCOUNT_DISABLED:
        # A security event: every session, access token and one-time link dies with it.
        revoked = await events.record(
            conn,
            settings=settings,
            user_id=target.id,
            event=Event.DISABLED,
            client=Client(ip=actor.ip),
            email=target.email,
        )
        await audit.record(
            conn,
            action=audit.SESSIONS_REVOKED,
            actor_id=actor.user_id,
            target_user_id=target.id,
            ip=actor.ip,
            after={"sessions": len(revoked.session_ids)},
        )
    return await _require_user(target.id, conn=conn), revoked


async def _deletion_status(
    conn: BaseDBAsyncClient, *, settings: Settings, actor: Actor, target: User, status: str
) -> tuple[User, Revocation | None]:
    """Schedule a deletion (no cancel link), or cancel one back to the status it had before."""
    if status == target.status:
        return target, None
    if status == ACCOUNT_PENDING_DELETION:
        _, revoked = await deletion.schedule(
            conn,
            settings=settings,
            user_id=target.id,
            email=target.email,
            actor_id=actor.user_id,
            client=Client(ip=actor.ip),
            cancel=None,
        )
        await audit.record(
            conn,
            action=STATUS_CHANGED,
            actor_id=actor.user_id,
            target_user_id=target.id,
            ip=actor.ip,
            before={"status": target.status},
            after={"status": status},
        )
        return await _require_user(target.id, conn=conn), revoked
    state = await lifecycle_queries.deletion_state(conn=conn, user_id=target.id)
    before = (state.status_before if state is not None else None) or ACCOUNT_ACTIVE
    if status != before:
        raise ValidationError({"status": f"a pending deletion returns to the status before it: {before}"})
    await lifecycle_queries.cancel_deletion(conn=conn, user_id=target.id, cancel_hash=None)
    await audit.record(
        conn,
        action=audit.DELETION_CANCELLED,
        actor_id=actor.user_id,
        target_user_id=target.id,
        ip=actor.ip,
        before={"status": ACCOUNT_PENDING_DELETION},
        after={"status": before},
    )
    await webhooks.user_changed(conn, settings=settings, user_id=target.id, event=webhooks.USER_UPDATED)
    return await _require_user(target.id, conn=conn), None


async def unlock(*, db: Database, settings: Settings, store: Store, actor: Actor, user_id: str) -> None:
    """Lift every lock of the user at once, every source's and the wrong-code ceiling (only
    below the actor's level)."""
    target = await _authorize_on_target(db=db, actor=actor, user_id=user_id, permission="users.write")
    await unlock_account(db=db, settings=settings, store=store, user_id=target.id, actor_id=actor.user_id, ip=actor.ip)


async def revoke_sessions(*, db: Database, settings: Settings, store: Store, actor: Actor, user_id: str) -> None:
    """Revoke every session and token of the user (only below the actor's level)."""
    target = await _authorize_on_target(db=db, actor=actor, user_id=user_id, permission="users.write")
    await revoke_all_sessions(
        db=db, settings=settings, store=store, user_id=target.id, actor_id=actor.user_id, client=Client(ip=actor.ip)
    )


async def reset_mfa(*, db: Database, settings: Settings, store: Store, actor: Actor, user_id: str) -> None:
    """Turn the user's MFA off (only below the actor's level): secret, recovery codes and
    outstanding mfa_tokens go, every session is revoked and the owner is mailed; the user
    signs in with the password alone until set up again."""
    async with db.transaction() as conn:
        acting, target = await lock_actor_and_target(conn, actor=actor, user_id=user_id, permission="users.write")
        _check_acts_below(actor=acting, target=target)
        revoked = await mfa.reset(
            conn,
            settings=settings,
            user_id=target.id,
            email=target.email,
            actor_id=actor.user_id,
            client=Client(ip=actor.ip),
        )
    await events.publish(settings=settings, store=store, revoked=revoked)


async def _authorize_on_target(*, db: Database, actor: Actor, user_id: str, permission: str) -> User:
    """Check the rule under both rows' locks, against the actor's level as it is now: a
    write that starts after the actor's demotion committed is refused."""
    async with db.transaction() as conn:
        acting, target = await lock_actor_and_target(conn, actor=actor, user_id=user_id, permission=permission)
        _check_acts_below(actor=acting, target=target)
    return target


def _as_user_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound() from None  # not an id we could have issued


async def _require_user(user_id: str, *, conn: BaseDBAsyncClient) -> User:
    user = await get_user(user_id=_as_user_id(user_id), conn=conn)
    if user is None:
        raise NotFound()
    return user


async def lock_actor_and_target(
    conn: BaseDBAsyncClient, *, actor: Actor, user_id: str, permission: str
) -> tuple[Acting, User]:
    """Lock the actor's and the target's rows (in id order, as every writer does, so two
    administrators acting on each other queue instead of deadlocking), then read both.

    The actor's level and permission come from PostgreSQL now, not from the request's
    cached context: an administrator demoted a moment ago cannot still act as one.
    """
    target_id = _as_user_id(user_id)
    await admin_queries.lock_user_rows(conn=conn, user_ids=sorted({actor.user_id, target_id}))
    row = await admin_queries.fetch_acting(conn=conn, user_id=actor.user_id)
    if row is None or not row.live:
        raise InsufficientPrivileges()
    if row.status != ACCOUNT_ACTIVE:
        raise AccountDisabled()
    acting = Acting(user_id=actor.user_id, privilege_level=row.privilege_level, permissions=frozenset(row.permissions))
    if acting.privilege_level < reference.ADMIN_PRIVILEGE:
        raise InsufficientPrivileges()
    if permission not in acting.permissions:
        raise PermissionDenied()
    return acting, await _require_user(target_id, conn=conn)


async def _role_level(conn: BaseDBAsyncClient, role: str) -> int:
    level = await rbac_queries.role_level(conn=conn, role=role)
    if level is None:
        raise ValidationError({"role": f"unknown role {role!r}"})
    return level


def _check_escalation(*, actor: Acting, target: User, new_level: int) -> None:
    if actor.user_id == target.id:
        raise PrivilegeEscalationPrevented("You cannot change your own role")
    if target.privilege_level >= reference.ROLES[reference.SUPERADMIN_ROLE]:
        raise PrivilegeEscalationPrevented("A superadmin's role is changed only from the command line")
    if actor.privilege_level >= reference.ROLES[reference.SUPERADMIN_ROLE]:
        return
    if not (actor.privilege_level > target.privilege_level and actor.privilege_level > new_level):
        raise PrivilegeEscalationPrevented("You can only assign roles below your own to users below you")


def _check_acts_below(*, actor: Acting, target: User) -> None:
    if actor.user_id != target.id and actor.privilege_level > target.privilege_level:
        return
    raise PrivilegeEscalationPrevented("You can only act on users below your own privilege level")
