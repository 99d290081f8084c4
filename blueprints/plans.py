"""/api/v1/plans: the public price list."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic_ext import openapi

from manas360.http.deps import deps
from manas360.http.responses import json_response
from manas360.services import rbac
from manas360.services.entitlements import current_catalog

bp = Blueprint("plans", url_prefix="/plans")


@bp.get("")
@openapi.definition(summary="List plans",
                    description="Every plan, cheapest tier first, with its monthly price in cents and its features. "
                                "Public: no token needed.", tag="plans")
async def list_plans(request: Request) -> HTTPResponse:
    app = deps(request)
    catalog = await current_catalog(store=app.store, catalog=app.catalog)
    return json_response({"items": rbac.plans_view(catalog)})
