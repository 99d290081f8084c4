"""Operations endpoints (no /api/v1 prefix, under no rate-limit policy)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.edge import request_client_ip
from manas360.errors import PermissionDenied, ServiceUnavailable
from manas360.http import metrics
from manas360.http.deps import deps
from manas360.http.operations import TEXT_PLAIN, operation
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import Health, HealthUnavailable, Live, Ready
from manas360.services.ops import health

bp = Blueprint("ops")


@bp.get("/health/live")
@operation(
    id="ops_live",
    tag="operations",
    rate_limited=False,
    responses={200: Live},
    summary="Liveness: 200 while the process serves",
)
async def live(request: AppRequest) -> HTTPResponse:
    return model_response(Live(status="ok"))


@bp.get("/health/ready")
@operation(
    id="ops_ready",
    tag="operations",
    rate_limited=False,
    responses={200: Ready},
    error_model=HealthUnavailable,
    summary="Readiness: 200 when PostgreSQL and Redis both answer, else 503 naming the component",
    description="Each worker reuses its last check for about 1 s, and concurrent calls share one check.",
)
async def ready(request: AppRequest) -> HTTPResponse:
    checks = await _readiness_cache(request).get(db=deps(request).db, store=deps(request).store)
    _raise_if_down(checks, checks)
    return model_response(Ready.model_validate({"status": "ok", **checks}))


@bp.get("/health")
@operation(
    id="ops_health",
    tag="operations",
    rate_limited=False,
    responses={200: Health},
    error_model=HealthUnavailable,
    summary="Health report: stores, pools, memory, uptime and version",
    description="503 (the envelope with the same report) when PostgreSQL or Redis does not answer.",
)
async def report(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    body = await health.report(db=app.db, store=app.store, cache=_readiness_cache(request), mail=app.outbox.status)
    _raise_if_down(body, {"database": body["database"], "redis": body["redis"]})
    return model_response(Health.model_validate(body))


@bp.get("/metrics")
@operation(
    id="ops_metrics",
    tag="operations",
    rate_limited=False,
    responses={200: TEXT_PLAIN},
    errors={403: ("PermissionDenied",)},
    summary="Prometheus metrics of every worker (text exposition format)",
    description="Open to METRICS_ALLOWED_CIDRS (none by default, loopback included) and to "
    "`Authorization: Bearer <METRICS_TOKEN>` when a token is configured; 403 "
    "`PermissionDenied` otherwise.",
)
async def prometheus(request: AppRequest) -> HTTPResponse:
    settings = deps(request).settings
    if not metrics.scrape_allowed(
        client_ip=request_client_ip(request),
        networks=settings.metrics_networks,
        token=settings.metrics_token.get_secret_value(),
        authorization=request.headers.get("authorization"),
    ):
        raise PermissionDenied("Metrics are not open to this client")
    body, content_type = metrics.render(deps(request).db)
    return HTTPResponse(body, content_type=content_type)


def _readiness_cache(request: AppRequest) -> health.ReadinessCache:
    """This worker's cache (one per app: each worker process has its own)."""
    cache = getattr(request.app.ctx, "readiness_cache", None)
    if cache is None:
        cache = request.app.ctx.readiness_cache = health.ReadinessCache()
    return cache


def _raise_if_down(body: Mapping[str, Any], checks: Mapping[str, str]) -> None:
    """A failed check leaves as the 503 envelope, naming the component(s) down."""
    down = [name for name, value in checks.items() if value != "ok"]
    if down:
        details = {key: value for key, value in body.items() if key != "status"}
        raise ServiceUnavailable(
            f"{' and '.join(down)} unavailable", component=",".join(down), status="unavailable", **details
        )
