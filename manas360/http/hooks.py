"""The app's one request hook and one response hook.

Every request passes through exactly these two (plus sanic-ext's CORS response hook when
ALLOWED_ORIGINS lists origins): request id, ORM context, the metrics timer, request-shape
limits and rate limits on the way in; the request id, the security headers, the RateLimit
headers, Cache-Control, metrics and (when ACCESS_LOG is on) the access line on the way out,
error responses included. One hook each instead of one per concern, because Sanic pays for
every middleware on every request (a coroutine, a call through its dispatch loop); the
constant headers are built once here, and a feature that is off costs nothing per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sanic.response import BaseHTTPResponse

from manas360 import errors
from manas360.edge.limits import check_request_shape
from manas360.edge.ratelimit import EdgeLimiter, add_rate_headers
from manas360.http.metrics import HttpStats, observe_response
from manas360.http.request_id import request_id
from manas360.http.responses import ApiResponse, EncodedHeaders, encode_headers
from manas360.http.sanic_types import App, AppRequest
from manas360.logs import request_id_var
from manas360.settings import Settings

# A JSON API never needs to load anything; /docs (Swagger UI, served from this service)
# loads its own scripts and styles, and Swagger UI sets inline styles on its elements.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The account page (blueprints/account.py) loads exactly its own script, stylesheet and icon
# and talks only to this service: no inline script or style, no 'unsafe-*', no data: URLs
# (the TOTP QR code is rebuilt as DOM nodes from the API's SVG text).
ACCOUNT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The page and the landing paths of the mailed links (`{PUBLIC_BASE_URL}/reset-password#token=...`);
# its files are under /account/. Never cached: the page's answers hold a person's account.
ACCOUNT_PAGES = frozenset(
    {"/account", "/reset-password", "/verify-email", "/confirm-email", "/cancel-email-change", "/cancel-deletion"}
)
ACCOUNT_FILES_PREFIX = "/account/"
HSTS = "max-age=63072000; includeSubDomains"
# The only responses a cache may keep (HTTP contract): the public price list and the
# signing keys when they succeed, and /docs* (whose assets set their own max-age). Every
# other response, and every error, is `no-store`: tokens, users, sessions, admin data.
CACHEABLE_PATHS = frozenset({"/api/v1/plans", "/.well-known/jwks.json"})
NO_STORE = {"Cache-Control": "no-store"}

AccessLogger = Callable[[AppRequest, BaseHTTPResponse], None]


def security_headers(settings: Settings, *, docs: bool, csp: str | None = None) -> dict[str, str]:
    """The headers every response carries (besides X-Request-ID), built once; `csp` overrides
    the policy (the account page's)."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Content-Security-Policy": csp or (DOCS_CSP if docs else API_CSP),
    }
    if settings.hsts:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def install_hooks(
    app: App,
    settings: Settings,
    *,
    edge: EdgeLimiter,
    stats: HttpStats,
    blocked_paths: frozenset[str],
    access_log: AccessLogger | None,
) -> None:
    # Five constant sets, built and encoded once: per request the hook only picks one.
    # The cacheable ones carry no Cache-Control, so a handler's own (a docs asset's) stands.
    api_headers = security_headers(settings, docs=False)
    docs_headers = security_headers(settings, docs=True)
    api_cacheable, docs_cacheable = _constants(api_headers), _constants(docs_headers)
    api_no_store, docs_no_store = _constants({**api_headers, **NO_STORE}), _constants({**docs_headers, **NO_STORE})
    account_no_store = _constants({**security_headers(settings, docs=False, csp=ACCOUNT_CSP), **NO_STORE})

    @app.middleware("request", priority=100)
    async def on_request(request: AppRequest) -> None:
        request.ctx.metrics_started = time.perf_counter()
        request_id_var.set(request_id(request))
        check_request_shape(request)
        if request.path in blocked_paths:
            raise errors.NotFound()
        await edge.check(request)

    @app.middleware("response", priority=100)
    async def on_response(request: AppRequest, response: BaseHTTPResponse) -> None:
        headers = response.headers
        headers["X-Request-ID"] = request_id(request)
        path = request.path
        if path.startswith("/docs"):
            constants = docs_cacheable if response.status < 400 else docs_no_store
        elif path in ACCOUNT_PAGES or path.startswith(ACCOUNT_FILES_PREFIX):
            constants = account_no_store
        else:  # the hot path (an authenticated GET): one set lookup, then no-store
            constants = api_cacheable if path in CACHEABLE_PATHS and response.status < 400 else api_no_store
        if type(response) is ApiResponse:  # ours: the constants go out pre-encoded
            response.constant_headers = constants[1]
        else:  # sanic-ext's pages, Sanic's own answers; update(): a second pass adds no copy
            headers.update(constants[0])
        add_rate_headers(request, response)
        observe_response(stats, request, response.status)
        if access_log is not None:
            access_log(request, response)


def _constants(headers: dict[str, str]) -> tuple[dict[str, str], EncodedHeaders]:
    """A constant header set as a dict (for Sanic's responses) and pre-encoded (for ours)."""
    return headers, encode_headers(headers)
