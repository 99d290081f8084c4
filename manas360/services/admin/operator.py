"""The operator's writes on a user, from the command line (`manas360 users ...`): the same
effects and invalidations as the admin API's (manas360.services.admin.users) — each write
commits in PostgreSQL, audited (with its webhook event), then Redis is told — with the
operator as actor.

The operator holds the database credentials, so there is no actor row to check a privilege
level against: the escalation rule of the API does not apply (a superadmin can be disabled
or demoted here, the one place that can). Audit entries carry no `actor_id` and the request
id `cli` (manas360.logs.request_id_var, set by the command).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.clock import iso
from manas360.db import Database
from manas360.errors import NotFound, ValidationError
from manas360.models import ACCOUNT_DISABLED, ACCOUNT_PENDING_DELETION
from manas360.queries.access import rbac as rbac_queries
from manas360.queries.accounts import lifecycle as lifecycle_queries
from manas360.queries.admin import users as admin_queries
from manas360.services.access import subscriptions
from manas360.services.access.entitlements import forget_user
from manas360.services.accounts import deletion
from manas360.services.accounts.users import User, get_credentials, get_user, normalize_email
from manas360.services.admin import audit
from manas360.services.admin.users import ROLE_CHANGED, STATUS_CHANGED, SUBSCRIPTION_CHANGED, get_user_detail
from manas360.services.auth import events
from manas360.services.auth import mfa_enrolment as mfa
from manas360.services.auth.events import Event, Revocation
from manas360.services.auth.lockout import unlock_account
from manas360.services.auth.sessions import Client
from manas360.services.auth.signout import revoke_all_sessions
from manas360.services.integration import webhooks
from manas360.settings import Settings
from manas360.store import Store

CLI_REQUEST_ID = "cli"
"""The request id of every audit entry a command writes (their actor_id is empty)."""
_OPERATOR = Client(ip="", source="cli")


class UnknownUser(NotFound):
    def __init__(self, email: str) -> None:
        super().__init__(f"no user with email {email}")


async def find_user_id(*, db: Database, email: str) -> str:
    account = await get_credentials(
        conn=db.connection, email=normalize_email(email), source=_OPERATOR.source, known_source_s=0
    )
    if account is None:
        raise UnknownUser(email)
    return account.user_id


async def show(*, db: Database, email: str) -> dict[str, Any]:
    """What GET /api/v1/admin/users/{id} answers."""
    return await get_user_detail(db=db, user_id=await find_user_id(db=db, email=email))


async def unlock(*, db: Database, settings: Settings, store: Store, email: str) -> None:
    await unlock_account(
        db=db, settings=settings, store=store, user_id=await find_user_id(db=db, email=email), actor_id=None
    )


async def revoke_sessions(*, db: Database, settings: Settings, store: Store, email: str) -> None:
    await revoke_all_sessions(
        db=db,
        settings=settings,
        store=store,
        user_id=await find_user_id(db=db, email=email),
        actor_id=None,
        client=_OPERATOR,
    )


async def set_status(*, db: Database, settings: Settings, store: Store, email: str, status: str) -> User:
    """Enable or disable; disabling revokes every session and token (as the API does)."""
    user_id = await find_user_id(db=db, email=email)
    revoked: Revocation | None = None
    async with db.transaction() as conn:
        target = await _lock(conn, user_id)
        if target.status == ACCOUNT_PENDING_DELETION:
            raise ValidationError({"status": "the account's deletion is pending: cancel-deletion first"})
        if target.status != status:
            await admin_queries.set_status(conn=conn, user_id=target.id, status=status)
            await audit.record(
                conn,
                action=STATUS_CHANGED,
                actor_id=None,
                target_user_id=target.id,
                before={"status": target.status},
                after={"status": status},
            )
            await webhooks.user_changed(conn, settings=settings, user_id=target.id, event=webhooks.USER_UPDATED)
        if status == ACCOUNT_DISABLED:
            revoked = await events.record(
                conn, settings=settings, user_id=target.id, event=Event.DISABLED, client=_OPERATOR, email=target.email
            )
            await audit.record(
                conn,
                action=audit.SESSIONS_REVOKED,
                actor_id=None,
                target_user_id=target.id,
                after={"sessions": len(revoked.session_ids)},
            )
        user = await _lock(conn, user_id)
    await forget_user(store=store, user_id=user.id)
    if revoked is not None:
        await events.publish(settings=settings, store=store, revoked=revoked)
    return user


async def reset_mfa(*, db: Database, settings: Settings, store: Store, email: str) -> None:
    user_id = await find_user_id(db=db, email=email)
    async with db.transaction() as conn:
        target = await _lock(conn, user_id)
        revoked = await mfa.reset(
            conn, settings=settings, user_id=target.id, email=target.email, actor_id=None, client=_OPERATOR
        )
    await events.publish(settings=settings, store=store, revoked=revoked)


async def set_role(*, db: Database, settings: Settings, store: Store, email: str, role: str) -> User:
    user_id = await find_user_id(db=db, email=email)
    async with db.transaction() as conn:
        target = await _lock(conn, user_id)
        if await rbac_queries.role_level(conn=conn, role=role) is None:
            raise ValidationError({"role": f"unknown role {role!r}"})
        await admin_queries.set_role(conn=conn, user_id=target.id, role=role)
        await audit.record(
            conn,
            action=ROLE_CHANGED,
            actor_id=None,
            target_user_id=target.id,
            before={"role": target.role},
            after={"role": role},
        )
        await webhooks.user_changed(conn, settings=settings, user_id=target.id, event=webhooks.USER_UPDATED)
        user = await _lock(conn, user_id)
    await forget_user(store=store, user_id=user.id)
    return user


async def set_plan(
    *, db: Database, settings: Settings, store: Store, email: str, plan: str, ends_at: datetime | None
) -> User:
    user_id = await find_user_id(db=db, email=email)
    async with db.transaction() as conn:
        target = await _lock(conn, user_id)
        await subscriptions.set_plan(conn, user_id=target.id, plan=plan, ends_at=ends_at)
        await audit.record(
            conn,
            action=SUBSCRIPTION_CHANGED,
            actor_id=None,
            target_user_id=target.id,
            before={"plan": target.plan},
            after={"plan": plan, "ends_at": iso(ends_at)},
        )
        await webhooks.user_changed(conn, settings=settings, user_id=target.id, event=webhooks.USER_UPDATED)
        user = await _lock(conn, user_id)
    await forget_user(store=store, user_id=user.id)
    return user


async def schedule_deletion(*, db: Database, settings: Settings, store: Store, email: str) -> datetime:
    """As an administrator's PUT status `pending_deletion`: every session revoked, the owner told
    (no cancel link: only an operator or administrator cancels); when it will be purged."""
    user_id = await find_user_id(db=db, email=email)
    async with db.transaction() as conn:
        target = await _lock(conn, user_id)
        if target.status == ACCOUNT_PENDING_DELETION:
            raise ValidationError({"status": "the account's deletion is already pending"})
        deletion_at, revoked = await deletion.schedule(
            conn, settings=settings, user_id=target.id, email=target.email, actor_id=None, client=_OPERATOR, cancel=None
        )
    await deletion.after_schedule(settings=settings, store=store, user_id=user_id, revoked=revoked)
    return deletion_at


async def cancel_deletion(*, db: Database, settings: Settings, store: Store, email: str) -> str:
    """Back to the status before the deletion was scheduled; that status."""
    user_id = await find_user_id(db=db, email=email)
    async with db.transaction() as conn:
        await _lock(conn, user_id)
        restored = await lifecycle_queries.cancel_deletion(conn=conn, user_id=user_id, cancel_hash=None)
        if restored is None:
            raise ValidationError({"status": "no deletion of this account is pending"})
        await audit.record(
            conn,
            action=audit.DELETION_CANCELLED,
            actor_id=None,
            target_user_id=user_id,
            before={"status": ACCOUNT_PENDING_DELETION},
            after={"status": restored},
        )
        await webhooks.user_changed(conn, settings=settings, user_id=user_id, event=webhooks.USER_UPDATED)
    await forget_user(store=store, user_id=user_id)
    return restored


async def _lock(conn: BaseDBAsyncClient, user_id: str) -> User:
    """Lock the user's row (as every writer does) and read the user as they are now."""
    await admin_queries.lock_user_rows(conn=conn, user_ids=[user_id])
    user = await get_user(conn=conn, user_id=user_id)
    if user is None:
        raise NotFound()
    return user
