"""The gated product surfaces: each route declares what it needs; the guard decides."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic_ext import openapi

from manas360.blueprints.guard import BEARER, guarded
from manas360.http.responses import json_response
from manas360.services import analytics

bp = Blueprint("product")


@bp.get("/dashboard")
@openapi.definition(summary="Dashboard", description="Needs the permission `dashboard.read` (403 `PermissionDenied`).",
                    tag="product", secured=BEARER)
@guarded(permissions=("dashboard.read",))
async def dashboard(request: Request) -> HTTPResponse:
    access = request.ctx.access
    return json_response({"dashboard": "standard", "user_id": access.user_id, "plan": access.plan})


@bp.get("/premium/dashboard")
@openapi.definition(summary="Premium dashboard",
                    description="Needs the feature `premium_dashboard` of the caller's plan; without it, 403 "
                                "`FeatureNotAvailable` with `upgrade` naming the cheapest plan that has it.",
                    tag="product", secured=BEARER)
@guarded(features=("premium_dashboard",))
async def premium_dashboard(request: Request) -> HTTPResponse:
    access = request.ctx.access
    return json_response({"dashboard": "premium", "user_id": access.user_id, "plan": access.plan})


@bp.get("/admin/analytics")
@openapi.definition(summary="Platform analytics",
                    description="Users by plan and role, and logins, failed logins and lockouts in the last 24 "
                                "hours. Needs `analytics.read` (403 `PermissionDenied`).",
                    tag="admin", secured=BEARER)
@guarded(permissions=("analytics.read",))
async def admin_analytics(request: Request) -> HTTPResponse:
    return json_response(await analytics.summary())
