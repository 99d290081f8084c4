"""`install_edge(app, settings)`: the edge's middleware and listeners, called by create_app."""

from __future__ import annotations

import asyncio
import contextlib

from sanic import Request
from sanic.response import BaseHTTPResponse

from manas360 import errors
from manas360.edge.blocklog import BlockLog, flush_block_log, run_flusher
from manas360.edge.limits import check_request_shape
from manas360.edge.policies import PolicyMap
from manas360.edge.ratelimit import EdgeLimiter, add_rate_headers
from manas360.http.sanic_types import App
from manas360.settings import Settings

FINAL_FLUSH_TIMEOUT_S = 5.0


def install_edge(app: App, settings: Settings) -> None:
    """Request-shape limits and rate limits on every request, RateLimit headers on every
    limited response, and the block log's flusher for the server's lifetime."""
    policies = PolicyMap(settings)
    app.ctx.edge = EdgeLimiter(policies=policies, block_log=BlockLog())
    blocked_paths = _blocked_docs_paths(app)

    # After the request id (100) and the metrics timer (99): a refusal still has both.
    @app.middleware("request", priority=90)
    async def edge_request(request: Request) -> None:
        check_request_shape(request)
        if request.path in blocked_paths:
            raise errors.NotFound()
        await request.app.ctx.edge.check(request)

    @app.middleware("response", priority=90)
    async def edge_response(request: Request, response: BaseHTTPResponse) -> None:
        add_rate_headers(request, response)

    @app.before_server_start
    async def start_block_log(app: App) -> None:
        # Runs after the routes are final: a bad @rate_limited declaration stops the start.
        policies.check_routes(app.router.routes)
        app.ctx.edge_flusher = asyncio.create_task(run_flusher(app.ctx.edge.block_log, orm=app.ctx.orm))

    @app.before_server_stop
    async def stop_block_log(app: App) -> None:
        flusher = app.ctx.edge_flusher
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(flush_block_log(app), FINAL_FLUSH_TIMEOUT_S)


def _blocked_docs_paths(app: App) -> frozenset[str]:
    # sanic-ext's Swagger OAuth2 redirect page fetches its HTML from a CDN with a blocking
    # urllib call on the event loop, per request: anyone could stall a worker with it.
    # The API has no OAuth2 flow, so the page is not served.
    prefix = getattr(app.config, "OAS_URL_PREFIX", "/docs").rstrip("/")
    return frozenset({prefix + getattr(app.config, "OAS_UI_SWAGGER_OAUTH2_REDIRECT", "/oauth2-redirect.html")})
