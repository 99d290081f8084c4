"""The optional access log (ACCESS_LOG): one structured line per request, through loguru.

A line carries the method (known methods, else "other"), the route template (never the
raw path: ids, tokens and query strings stay out), status, duration, request id and the
client's address. Headers and bodies are never read here.
"""

from __future__ import annotations

import time

from loguru import logger
from sanic import Request
from sanic.response import BaseHTTPResponse

from manas360.edge import request_client_ip
from manas360.http.request_id import request_id
from manas360.http.sanic_types import App
from manas360.metrics import method_label, request_started, route_label
from manas360.settings import Settings

ACCESS_LOGGER = "manas360.access"
_access = logger.bind(logger_name=ACCESS_LOGGER)


def install_access_log(app: App, *, settings: Settings) -> None:
    """Log every response when ACCESS_LOG is on; when off nothing is registered at all."""
    if not settings.access_log:
        return

    @app.middleware("response", priority=98)
    async def log_access(request: Request, response: BaseHTTPResponse) -> None:
        # Timed from the metrics timer (priority 99) rather than a second request middleware.
        started = request_started(request)
        duration_ms = round((time.perf_counter() - started) * 1000, 3) if started is not None else None
        _access.info("{method} {route} {status} {duration_ms} ms", method=method_label(request.method),
                     route=route_label(request), status=response.status, duration_ms=duration_ms,
                     client_ip=request_client_ip(request), request_id=request_id(request))
