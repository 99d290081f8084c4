"""/api/v1/admin: user, role, plan and audit administration.

Every route needs privilege level 90 or more (else 403 `InsufficientPrivileges`) and its
own permission (else 403 `PermissionDenied`). Writes follow the escalation rule and are
audited; see manas360.services.admin.users.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, Field, field_validator
from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.blueprints.bodies import PlanPath, RolePath, StrictBody, UserPath
from manas360.blueprints.guard import client, guarded
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.pagination import Page, parse_page
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import AuditPage, Plan, Role, RoleList, User, UserDetail, UserPage
from manas360.services.access import catalog_defaults as reference
from manas360.services.access import rbac
from manas360.services.access.entitlements import ADMIN_READ, ADMIN_WRITE
from manas360.services.admin import audit
from manas360.services.admin import users as admin

bp = Blueprint("admin", url_prefix="/admin")
ADMIN = reference.ADMIN_PRIVILEGE
_Name = Field(min_length=1, max_length=64)
# What every admin route may answer besides its success: the two 403s of the admin gate,
# and 404 for an id that names no user.
# ReauthenticationRequired: ADMIN_REQUIRE_MFA (on in production) wants aal 2, and for writes a fresh auth_time.
_GATE = {403: ("InsufficientPrivileges", "PermissionDenied", "ReauthenticationRequired")}
_WRITE = {
    403: ("InsufficientPrivileges", "PermissionDenied", "PrivilegeEscalationPrevented", "ReauthenticationRequired")
}


class UserQuery(Page):
    q: str | None = Field(
        default=None, max_length=100, description="Case-insensitive substring of email or display name"
    )


class AuditQuery(Page):
    user_id: str | None = Field(default=None, max_length=64, description="Only entries about this user (a UUID)")
    action: str | None = Field(default=None, max_length=64, description="Only entries of this action")


class RoleBody(StrictBody):
    role: str = _Name


MAX_ENDS_AT_YEAR = 9000


class SubscriptionBody(StrictBody):
    plan: str = _Name
    ends_at: AwareDatetime | None = None

    @field_validator("ends_at")
    @classmethod
    def _in_utc_range(cls, value: datetime | None) -> datetime | None:
        """Normalised to UTC here: an extreme offset (9999-12-31T23:59:59-23:59) overflowed
        later, in PostgreSQL's driver, as a 500. Nothing sane ends in year 9000 or later."""
        if value is None:
            return None
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("must be a time that exists in UTC") from None
        if value.year >= MAX_ENDS_AT_YEAR:
            raise ValueError(f"must be before the year {MAX_ENDS_AT_YEAR}")
        return value


class StatusBody(StrictBody):
    status: Literal["active", "disabled", "pending_deletion"]


class PermissionsBody(StrictBody):
    permissions: list[str] = Field(max_length=200)


class FeaturesBody(StrictBody):
    features: list[str] = Field(max_length=200)


def _actor(request: AppRequest) -> admin.Actor:
    return admin.Actor(user_id=request.ctx.access.user_id, ip=client(request).ip)


@bp.get("/users")
@operation(
    id="admin_list_users",
    tag="admin",
    secured=True,
    query=UserQuery,
    responses={200: UserPage},
    errors=_GATE,
    summary="List users",
    description="Newest first, `limit` 1..100 (default 20), `q` a case-insensitive substring of "
    "email or display name, `cursor` the `next_cursor` of the previous page (stable "
    "while users are being added). Needs `users.read`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_READ, permissions=("users.read",))
async def list_users(request: AppRequest) -> HTTPResponse:
    query = parse_page(request, UserQuery)
    page = await admin.list_users(db=deps(request).db, limit=query.limit, cursor=query.cursor, q=query.q)
    return model_response(UserPage.model_validate(page.as_dict()))


@bp.get("/users/<user_id:str>")
@operation(
    id="admin_get_user",
    tag="admin",
    secured=True,
    path=UserPath,
    responses={200: UserDetail},
    errors=_GATE,
    summary="Show a user",
    description="The user with `locked_until` and `subscription`. Needs `users.read`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_READ, permissions=("users.read",))
async def show_user(request: AppRequest, user_id: str) -> HTTPResponse:
    return model_response(UserDetail.model_validate(await admin.get_user_detail(db=deps(request).db, user_id=user_id)))


@bp.put("/users/<user_id:str>/role")
@operation(
    id="admin_change_role",
    tag="admin",
    secured=True,
    path=UserPath,
    body=RoleBody,
    responses={200: User},
    errors=_WRITE,
    summary="Change a user's role",
    description="Only on users below you, only to roles below you (a superadmin may assign any "
    "role to a user below 100); never your own role. Refusals are 403 "
    "`PrivilegeEscalationPrevented`. Needs `roles.assign`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_WRITE, permissions=("roles.assign",))
async def change_role(request: AppRequest, user_id: str) -> HTTPResponse:
    body = parse_body(request, RoleBody)
    app = deps(request)
    user = await admin.change_role(
        db=app.db, settings=app.settings, store=app.store, actor=_actor(request), user_id=user_id, role=body.role
    )
    return model_response(User.model_validate(user, from_attributes=True))


@bp.put("/users/<user_id:str>/subscription")
@operation(
    id="admin_change_subscription",
    tag="admin",
    secured=True,
    path=UserPath,
    body=SubscriptionBody,
    responses={200: User},
    errors=_WRITE,
    summary="Change a user's subscription",
    description="Puts the user on `plan` from now until `ends_at` (ISO-8601 with an explicit UTC "
    "offset; open-ended when absent). `free` ends the current subscription. Needs "
    "`subscriptions.manage`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_WRITE, permissions=("subscriptions.manage",))
async def change_subscription(request: AppRequest, user_id: str) -> HTTPResponse:
    body = parse_body(request, SubscriptionBody)
    app = deps(request)
    user = await admin.change_subscription(
        db=app.db,
        settings=app.settings,
        store=app.store,
        actor=_actor(request),
        user_id=user_id,
        plan=body.plan,
        ends_at=body.ends_at,
    )
    return model_response(User.model_validate(user, from_attributes=True))


@bp.put("/users/<user_id:str>/status")
@operation(
    id="admin_set_status",
    tag="admin",
    secured=True,
    path=UserPath,
    body=StatusBody,
    responses={200: User},
    errors=_WRITE,
    summary="Enable or disable an account, or schedule or cancel its deletion",
    description="`disabled` revokes every session of the user at once; their login with the right "
    "password, any refresh and any authenticated request then answer 403 "
    "`AccountDisabled`. `active` lets them log in again (old tokens stay revoked). "
    "`pending_deletion` schedules the account's erasure after `ACCOUNT_DELETION_GRACE_S` (every session "
    "revoked; the owner is told, with no cancel link: only an administrator cancels it) and every request "
    "of theirs answers 403 `AccountPendingDeletion`; a pending deletion is cancelled by setting the status "
    "it had before (any other status is 422). "
    "Only on users below your level (403 `PrivilegeEscalationPrevented`). Needs "
    "`users.write`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_WRITE, permissions=("users.write",))
async def set_status(request: AppRequest, user_id: str) -> HTTPResponse:
    body, app = parse_body(request, StatusBody), deps(request)
    user = await admin.set_status(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        actor=_actor(request),
        user_id=user_id,
        status=body.status,
    )
    return model_response(User.model_validate(user, from_attributes=True))


@bp.post("/users/<user_id:str>/unlock")
@operation(
    id="admin_unlock_user",
    tag="admin",
    secured=True,
    path=UserPath,
    responses={204: None},
    errors=_WRITE,
    summary="Unlock a user",
    description="Lifts every lock of the account at once (per source and account-wide, and the ceiling "
    "on wrong second-factor codes) and clears the failure counts. Needs `users.write`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_WRITE, permissions=("users.write",))
async def unlock_user(request: AppRequest, user_id: str) -> HTTPResponse:
    app = deps(request)
    await admin.unlock(db=app.db, settings=app.settings, store=app.store, actor=_actor(request), user_id=user_id)
    return HTTPResponse(status=204)


@bp.post("/users/<user_id:str>/revoke-sessions")
@operation(
    id="admin_revoke_sessions",
    tag="admin",
    secured=True,
    path=UserPath,
    responses={204: None},
    errors=_WRITE,
    summary="Revoke a user's sessions",
    description="Every session, refresh token and access token of the user stops working on its "
    "next use, on every worker. Needs `users.write`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_WRITE, permissions=("users.write",))
async def revoke_sessions(request: AppRequest, user_id: str) -> HTTPResponse:
    app = deps(request)
    await admin.revoke_sessions(
        db=app.db, settings=app.settings, store=app.store, actor=_actor(request), user_id=user_id
    )
    return HTTPResponse(status=204)


@bp.post("/users/<user_id:str>/mfa/reset")
@operation(
    id="admin_reset_mfa",
    tag="admin",
    secured=True,
    path=UserPath,
    responses={204: None},
    errors=_WRITE,
    summary="Turn a user's MFA off",
    description="Removes the user's TOTP secret and recovery codes, voids their pending MFA logins and "
    "one-time links, signs every session out and mails them: they sign in with the password alone "
    "until they set MFA up again. Only on users below your level (403 "
    "`PrivilegeEscalationPrevented`). Needs `users.write`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_WRITE, permissions=("users.write",))
async def reset_mfa(request: AppRequest, user_id: str) -> HTTPResponse:
    app = deps(request)
    await admin.reset_mfa(db=app.db, settings=app.settings, store=app.store, actor=_actor(request), user_id=user_id)
    return HTTPResponse(status=204)


@bp.get("/roles")
@operation(
    id="admin_list_roles",
    tag="admin",
    secured=True,
    responses={200: RoleList},
    errors=_GATE,
    summary="List roles",
    description="Every role with its privilege level and permissions. Needs `roles.read`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_READ, permissions=("roles.read",))
async def list_roles(request: AppRequest) -> HTTPResponse:
    return model_response(RoleList.model_validate({"items": rbac.roles_view(request.ctx.access.catalog)}))


@bp.put("/roles/<name:str>/permissions")
@operation(
    id="admin_set_role_permissions",
    tag="admin",
    secured=True,
    path=RolePath,
    body=PermissionsBody,
    responses={200: Role},
    errors=_WRITE,
    summary="Set a role's permissions",
    description="Replaces the role's permissions; applies to every holder's next request. Only "
    "for roles below your level, and only granting permissions you hold yourself "
    "(403 `PrivilegeEscalationPrevented`). Needs `roles.manage`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_WRITE, permissions=("roles.manage",))
async def set_role_permissions(request: AppRequest, name: str) -> HTTPResponse:
    body, app = parse_body(request, PermissionsBody), deps(request)
    role = await rbac.set_role_permissions(
        db=deps(request).db,
        store=app.store,
        catalog=app.catalog,
        actor=_actor(request),
        role=name,
        permissions=body.permissions,
    )
    return model_response(Role.model_validate(role))


@bp.put("/plans/<name:str>/features")
@operation(
    id="admin_set_plan_features",
    tag="admin",
    secured=True,
    path=PlanPath,
    body=FeaturesBody,
    responses={200: Plan},
    errors=_GATE,
    summary="Set a plan's features",
    description="Replaces the plan's features; applies to every subscriber's next request. Needs `plans.manage`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_WRITE, permissions=("plans.manage",))
async def set_plan_features(request: AppRequest, name: str) -> HTTPResponse:
    body, app = parse_body(request, FeaturesBody), deps(request)
    plan = await rbac.set_plan_features(
        db=deps(request).db,
        store=app.store,
        catalog=app.catalog,
        actor=_actor(request),
        plan=name,
        features=body.features,
    )
    return model_response(Plan.model_validate(plan))


@bp.get("/audit-logs")
@operation(
    id="admin_list_audit_logs",
    tag="admin",
    secured=True,
    query=AuditQuery,
    responses={200: AuditPage},
    errors=_GATE,
    summary="Read the audit log",
    description="Newest first; filter by `user_id` (target) and `action`; `limit` 1..100, "
    "`cursor` from the previous page. Needs `audit.read`.",
)
@guarded(min_privilege=ADMIN, admin=ADMIN_READ, permissions=("audit.read",))
async def list_audit_logs(request: AppRequest) -> HTTPResponse:
    query = parse_page(request, AuditQuery)
    page = await audit.list_entries(
        db=deps(request).db, limit=query.limit, cursor=query.cursor, user_id=query.user_id, action=query.action
    )
    return model_response(AuditPage.model_validate(page.as_dict()))
