"""The app's one request hook and one response hook.

Every request passes through exactly these two (plus sanic-ext's CORS response hook when
ALLOWED_ORIGINS lists origins): request id, ORM context, the metrics timer, request-shape
limits and rate limits on the way in; the request id, the security headers, the RateLimit
headers, metrics and (when ACCESS_LOG is on) the access line on the way out, error
responses included. One hook each instead of one per concern, because Sanic pays for
every middleware on every request (a coroutine, a call through its dispatch loop); the
constant headers are built once here, and a feature that is off costs nothing per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sanic import Request
from sanic.response import BaseHTTPResponse

from manas360 import errors
from manas360.edge.limits import check_request_shape
from manas360.edge.ratelimit import EdgeLimiter, add_rate_headers
from manas360.http.request_id import request_id
from manas360.http.responses import ApiResponse, encode_headers
from manas360.http.sanic_types import App
from manas360.logs import request_id_var
from manas360.metrics import HttpStats, observe_response
from manas360.settings import Settings
from manas360.tortoise_context import activate

# A JSON API never needs to load anything; /docs (Swagger UI, served from this service)
# loads its own scripts and styles, and Swagger UI sets inline styles on its elements.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")
HSTS = "max-age=63072000; includeSubDomains"

AccessLogger = Callable[[Request, BaseHTTPResponse], None]


def security_headers(settings: Settings, *, docs: bool) -> dict[str, str]:
    """The headers every response carries (besides X-Request-ID), built once."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Content-Security-Policy": DOCS_CSP if docs else API_CSP,
    }
    if settings.hsts:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def install_hooks(app: App, settings: Settings, *, edge: EdgeLimiter, stats: HttpStats,
                  blocked_paths: frozenset[str], access_log: AccessLogger | None) -> None:
    api_headers = security_headers(settings, docs=False)
    docs_headers = security_headers(settings, docs=True)
    api_encoded, docs_encoded = encode_headers(api_headers), encode_headers(docs_headers)

    @app.middleware("request", priority=100)
    async def on_request(request: Request) -> None:
        request.ctx.metrics_started = time.perf_counter()
        request_id_var.set(request_id(request))
        activate(request.app.ctx.orm)
        check_request_shape(request)
        if request.path in blocked_paths:
            raise errors.NotFound()
        await edge.check(request)

    @app.middleware("response", priority=100)
    async def on_response(request: Request, response: BaseHTTPResponse) -> None:
        headers = response.headers
        headers["X-Request-ID"] = request_id(request)
        docs = request.path.startswith("/docs")
        if type(response) is ApiResponse:  # ours: the constants go out pre-encoded
            response.constant_headers = docs_encoded if docs else api_encoded
        else:  # sanic-ext's pages, Sanic's own answers; update(): a second pass adds no copy
            headers.update(docs_headers if docs else api_headers)
        add_rate_headers(request, response)
        observe_response(stats, request, response.status)
        if access_log is not None:
            access_log(request, response)
