"""`install_edge(app, settings)`: the edge's limiter and listeners, called by create_app
(its per-request part runs in the app's request and response hooks, manas360.http.hooks)."""

from __future__ import annotations

import asyncio
import contextlib

from manas360.edge.blocklog import BlockLog, flush_block_log, run_flusher
from manas360.edge.policies import PolicyMap
from manas360.edge.ratelimit import EdgeLimiter
from manas360.http.sanic_types import App
from manas360.settings import Settings

FINAL_FLUSH_TIMEOUT_S = 5.0


def install_edge(app: App, settings: Settings) -> tuple[EdgeLimiter, frozenset[str]]:
    """Set up the rate limiter (`app.ctx.edge`) and the block log's flusher for the server's
    lifetime; return the limiter and the paths never served. The request hook applies
    request-shape limits and rate limits to every request, the response hook the RateLimit
    headers to every limited response."""
    policies = PolicyMap(settings)
    app.ctx.edge = limiter = EdgeLimiter(policies=policies, block_log=BlockLog())
    blocked_paths = _blocked_docs_paths(app)

    @app.before_server_start
    async def start_block_log(app: App) -> None:
        # Runs after the routes are final: a bad @rate_limited declaration stops the start.
        policies.check_routes(app.router.routes)
        app.ctx.edge_flusher = asyncio.create_task(run_flusher(app.ctx.edge.block_log, db=app.ctx.deps.db))

    @app.before_server_stop
    async def stop_block_log(app: App) -> None:
        flusher = app.ctx.edge_flusher
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(flush_block_log(app), FINAL_FLUSH_TIMEOUT_S)

    return limiter, blocked_paths


def _blocked_docs_paths(app: App) -> frozenset[str]:
    # sanic-ext's Swagger OAuth2 redirect page fetches its HTML from a CDN with a blocking
    # urllib call on the event loop, per request: anyone could stall a worker with it.
    # The API has no OAuth2 flow, so the page is not served.
    prefix = getattr(app.config, "OAS_URL_PREFIX", "/docs").rstrip("/")
    return frozenset({prefix + getattr(app.config, "OAS_UI_SWAGGER_OAUTH2_REDIRECT", "/oauth2-redirect.html")})
