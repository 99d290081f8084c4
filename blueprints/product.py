"""The gated product surfaces: each route declares what it needs; the guard decides."""

from __future__ import annotations

from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.blueprints.guard import guarded
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import Analytics, Dashboard
from manas360.services.admin import analytics

bp = Blueprint("product")


@bp.get("/dashboard")
@operation(
    id="product_dashboard",
    tag="product",
    secured=True,
    responses={200: Dashboard},
    errors={403: ("PermissionDenied",)},
    summary="Dashboard",
    description="Needs the permission `dashboard.read` (403 `PermissionDenied`).",
)
@guarded(permissions=("dashboard.read",))
async def dashboard(request: AppRequest) -> HTTPResponse:
    access = request.ctx.access
    return model_response(Dashboard(dashboard="standard", user_id=access.user_id, plan=access.plan))


@bp.get("/premium/dashboard")
@operation(
    id="product_premium_dashboard",
    tag="product",
    secured=True,
    responses={200: Dashboard},
    errors={403: ("FeatureNotAvailable",)},
    summary="Premium dashboard",
    description="Needs the feature `premium_dashboard` of the caller's plan; without it, 403 "
    "`FeatureNotAvailable` with `upgrade` naming the cheapest plan that has it.",
)
@guarded(features=("premium_dashboard",))
async def premium_dashboard(request: AppRequest) -> HTTPResponse:
    access = request.ctx.access
    return model_response(Dashboard(dashboard="premium", user_id=access.user_id, plan=access.plan))


@bp.get("/admin/analytics")
@operation(
    id="admin_analytics",
    tag="admin",
    secured=True,
    responses={200: Analytics},
    errors={403: ("PermissionDenied",)},
    summary="Platform analytics",
    description="Users by plan and role, and logins, failed logins and lockouts in the last 24 "
    "hours. Needs `analytics.read` (403 `PermissionDenied`).",
)
@guarded(permissions=("analytics.read",))
async def admin_analytics(request: AppRequest) -> HTTPResponse:
    return model_response(Analytics.model_validate(await analytics.summary(db=deps(request).db)))
