"""/api/v1/plans: the public price list."""

from __future__ import annotations

from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import PlanList
from manas360.services.access import rbac
from manas360.services.access.entitlements import current_catalog

bp = Blueprint("plans", url_prefix="/plans")


@bp.get("")
@operation(
    id="plans_list",
    tag="plans",
    responses={200: PlanList},
    summary="List plans",
    description="Every plan, cheapest tier first, with its monthly price in cents and its features. "
    "Public: no token needed.",
)
async def list_plans(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    catalog = await current_catalog(store=app.store, catalog=app.catalog)
    return model_response(PlanList.model_validate({"items": rbac.plans_view(catalog)}))
