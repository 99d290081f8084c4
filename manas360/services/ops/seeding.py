"""Idempotent seeding of reference data and of the operator's superadmin.

Seeding runs on every start of the service, so it must never undo an administrator's
change: rows are inserted when missing (ON CONFLICT DO NOTHING), and default mappings are
written only for a role or plan that has none yet (i.e. on first seed). Concurrent seeders
queue on one advisory lock, held until their transaction commits.

The superadmin is never taken from somebody else: an existing account of another role is
refused unless the operator opts in, and any password or role seeding changes revokes
that account's sessions and access tokens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from manas360.db import Database
from manas360.queries.access.rbac import PLAN_FEATURES, ROLE_PERMISSIONS
from manas360.queries.ops import seeding as seeding_queries
from manas360.security.passwords import hash_password, verify_password
from manas360.services.access import catalog_defaults as reference
from manas360.services.access.entitlements import CONTEXT_TTL_S, forget_user
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth.sessions import Client
from manas360.services.auth.signout import revoke_all_sessions
from manas360.settings import Settings
from manas360.store import Store, StoreUnavailable

SEED_CLIENT = Client(ip="", user_agent="manas360 seed")


@dataclass(frozen=True, slots=True)
class SuperadminOutcome:
    """What seeding the superadmin did to the account `email`.

    status: created | updated | unchanged | refused (an existing non-superadmin account,
    left untouched). `changes` names what an update changed; `sessions_revoked` is true when
    a password or role changed; `cache_error` is set when Redis failed afterwards (the
    revocation is committed in PostgreSQL and the cached state expires within
    `cache_ttl_s`).
    """

    email: str
    status: str
    previous_role: str = ""
    changes: tuple[str, ...] = ()
    sessions_revoked: bool = False
    cache_error: str = ""
    cache_ttl_s: int = CONTEXT_TTL_S
    user_id: str = ""


@dataclass(slots=True)
class SeedReport:
    roles: int = 0
    permissions: int = 0
    plans: int = 0
    features: int = 0
    role_permissions: int = 0
    plan_features: int = 0
    superadmin: SuperadminOutcome | None = None  # None: not configured


async def seed(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    email: str = "",
    password: str = "",
    promote_existing: bool = False,
) -> SeedReport:
    """Reference data, then the superadmin `email` (if given), in one transaction under the seed lock.

    See `seed_superadmin` for what happens to an existing account.
    """
    async with db.transaction() as conn:
        await _take_seed_lock(conn)
        report = await _seed_reference(conn)
        if email:
            report.superadmin = await _seed_superadmin(
                conn,
                db=db,
                settings=settings,
                store=store,
                email=email,
                password=password,
                promote_existing=promote_existing,
            )
    if report.superadmin is not None:
        report.superadmin = await _after_commit(store=store, outcome=report.superadmin)
    return report


async def seed_superadmin(
    *, db: Database, settings: Settings, store: Store, email: str, password: str, promote_existing: bool = False
) -> SuperadminOutcome:
    """Create the superadmin `email`, or bring an existing one to `password` (and unlock it).

    An existing account of another role is refused unless `promote_existing`. Whenever its
    password or role changes, every session and access token of the account is revoked.
    """
    async with db.transaction() as conn:
        await _take_seed_lock(conn)
        outcome = await _seed_superadmin(
            conn,
            db=db,
            settings=settings,
            store=store,
            email=email,
            password=password,
            promote_existing=promote_existing,
        )
    return await _after_commit(store=store, outcome=outcome)


async def _take_seed_lock(conn: BaseDBAsyncClient) -> None:
    # Serialises concurrent seeders (several instances starting at once) until commit.
    await seeding_queries.take_seed_lock(conn=conn)


async def _seed_reference(conn: BaseDBAsyncClient) -> SeedReport:
    report = SeedReport()
    for role, level in reference.ROLES.items():
        report.roles += await seeding_queries.insert_role(conn=conn, name=role, privilege_level=level)
    for permission, description in reference.PERMISSIONS.items():
        report.permissions += await seeding_queries.insert_permission(
            conn=conn, name=permission, description=description
        )
    for plan, (display_name, tier, price_cents) in reference.PLANS.items():
        report.plans += await seeding_queries.insert_plan(
            conn=conn, name=plan, display_name=display_name, tier=tier, price_cents=price_cents
        )
    for feature, (_, description) in reference.FEATURES.items():
        report.features += await seeding_queries.insert_feature(conn=conn, name=feature, description=description)
    for role, permissions in reference.ROLE_PERMISSIONS.items():
        report.role_permissions += await seeding_queries.map_if_unmapped(
            conn=conn, mapping=ROLE_PERMISSIONS, owner=role, items=permissions
        )
    for plan in reference.PLANS:
        report.plan_features += await seeding_queries.map_if_unmapped(
            conn=conn, mapping=PLAN_FEATURES, owner=plan, items=reference.plan_features(plan)
        )
    return report


class SeedError(Exception):
    """Seeding the superadmin failed; the message is safe to print (no password, no hash)."""


async def _seed_superadmin(
    conn: BaseDBAsyncClient,
    *,
    db: Database,
    settings: Settings,
    store: Store,
    email: str,
    password: str,
    promote_existing: bool,
) -> SuperadminOutcome:
    if not password:
        raise SeedError("the superadmin needs a password (SUPERADMIN_PASSWORD)")
    try:
        return await _write_superadmin(
            conn,
            db=db,
            settings=settings,
            store=store,
            email=users.normalize_email(email),
            password=password,
            promote_existing=promote_existing,
        )
    except IntegrityError as exc:
        # PostgreSQL's DETAIL of a NOT NULL or CHECK violation repeats the whole failing row,
        # password hash included: keep only the message and drop the chained exception.
        raise SeedError(f"writing the superadmin {email!r} failed: {_without_detail(exc)}") from None


def _without_detail(exc: IntegrityError) -> str:
    cause = exc.args[0] if exc.args else exc
    message = cause.args[0] if isinstance(cause, asyncpg.PostgresError) and cause.args else str(cause)
    return f"{type(cause).__name__}: {message.splitlines()[0]}"


async def _write_superadmin(
    conn: BaseDBAsyncClient,
    *,
    db: Database,
    settings: Settings,
    store: Store,
    email: str,
    password: str,
    promote_existing: bool,
) -> SuperadminOutcome:
    account = await _lock_account(conn, email=email)
    if account is None:
        password_hash = await hash_password(password=password, cost=settings.bcrypt_cost)
        # DO NOTHING, never DO UPDATE: an account registered meanwhile falls through to the
        # rules below instead of being silently taken over.
        created_id = await seeding_queries.insert_superadmin(
            conn=conn,
            user_id=str(uuid.uuid4()),
            email=email,
            password_hash=password_hash,
            display_name="Superadmin",
            role=reference.SUPERADMIN_ROLE,
        )
        if created_id is not None:
            user_id = created_id
            await audit.record(
                conn,
                action=audit.SUPERADMIN_SEEDED,
                actor_id=None,
                target_user_id=user_id,
                after={"email": email, "role": reference.SUPERADMIN_ROLE, "created": True},
            )
            return SuperadminOutcome(email=email, status="created", user_id=user_id)
        account = await _lock_account(conn, email=email)
        if account is None:
            raise SeedError(f"role {reference.SUPERADMIN_ROLE!r} is missing: seed the reference data first")
    user_id, role = account.user_id, account.role
    # Making somebody else's account superadmin would hand its owner (and any token they
    # hold) the whole service: only an explicit operator decision may do that.
    if role != reference.SUPERADMIN_ROLE and not promote_existing:
        return SuperadminOutcome(email=email, status="refused", previous_role=role, user_id=user_id)
    same_password = await verify_password(password=password, password_hash=account.password_hash)
    changes = tuple(
        change
        for change, changed in (
            (f"promoted from {role}", role != reference.SUPERADMIN_ROLE),
            ("password changed", not same_password),
            ("unlocked", account.locked_until is not None),
        )
        if changed
    )
    if not changes:
        return SuperadminOutcome(email=email, status="unchanged", previous_role=role, user_id=user_id)
    password_hash = (
        account.password_hash if same_password else await hash_password(password=password, cost=settings.bcrypt_cost)
    )
    await seeding_queries.update_superadmin(
        conn=conn, user_id=user_id, password_hash=password_hash, role=reference.SUPERADMIN_ROLE
    )
    await audit.record(
        conn,
        action=audit.SUPERADMIN_SEEDED,
        actor_id=None,
        target_user_id=user_id,
        before={"role": role},
        after={"role": reference.SUPERADMIN_ROLE, "changes": list(changes)},
    )
    outcome = SuperadminOutcome(email=email, status="updated", previous_role=role, changes=changes, user_id=user_id)
    if role == reference.SUPERADMIN_ROLE and same_password:
        return outcome  # only unlocked: every token issued so far was issued to this same owner
    return await _revoke_sessions(db=db, settings=settings, store=store, outcome=outcome)


@dataclass(frozen=True, slots=True)
class _Account:
    """The live account `email` as seeding the superadmin reads it (row locked)."""

    user_id: str
    password_hash: str
    role: str
    locked_until: datetime | None


async def _lock_account(conn: BaseDBAsyncClient, *, email: str) -> _Account | None:
    row = await seeding_queries.lock_account_by_email(conn=conn, email=email)
    if row is None:
        return None
    return _Account(user_id=str(row.id), password_hash=row.password_hash, role=row.role, locked_until=row.locked_until)


async def _revoke_sessions(
    *, db: Database, settings: Settings, store: Store, outcome: SuperadminOutcome
) -> SuperadminOutcome:
    """Revoke every session of the account inside the seed's transaction (a savepoint), so
    the change and the revocation commit together; Redis hears of it before the commit,
    which at worst logs the account out if the commit then fails."""
    try:
        await revoke_all_sessions(
            db=db, settings=settings, store=store, user_id=outcome.user_id, actor_id=None, client=SEED_CLIENT
        )
    except StoreUnavailable as exc:
        return replace(outcome, sessions_revoked=True, cache_error=_one_line(exc))
    return replace(outcome, sessions_revoked=True)


async def _after_commit(*, store: Store, outcome: SuperadminOutcome) -> SuperadminOutcome:
    """Drop the account's cached context once its new role is committed."""
    if not outcome.sessions_revoked or outcome.cache_error:
        return outcome
    await forget_user(store=store, user_id=outcome.user_id)
    return outcome


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())
