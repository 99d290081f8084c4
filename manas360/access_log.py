"""The optional access log (ACCESS_LOG): one structured line per request, through loguru.

A line carries the method (known methods, else "other"), the route template (never the
raw path: ids, tokens and query strings stay out), status, duration, request id and the
client's address. Headers and bodies are never read here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from loguru import logger
from sanic.response import BaseHTTPResponse

from manas360.edge import request_client_ip
from manas360.http.metrics import method_label, request_started, route_label
from manas360.http.request_id import request_id
from manas360.http.sanic_types import AppRequest
from manas360.settings import Settings

ACCESS_LOGGER = "manas360.access"
_access = logger.bind(logger_name=ACCESS_LOGGER)


def access_logger(settings: Settings) -> Callable[[AppRequest, BaseHTTPResponse], None] | None:
    """What the response hook calls to log a response when ACCESS_LOG is on; None when off
    (nothing then runs per request)."""
    if not settings.access_log:
        return None

    def log_access(request: AppRequest, response: BaseHTTPResponse) -> None:
        # Timed from the metrics timer the request hook starts.
        started = request_started(request)
        duration_ms = round((time.perf_counter() - started) * 1000, 3) if started is not None else None
        _access.info(
            "{method} {route} {status} {duration_ms} ms",
            method=method_label(request.method),
            route=route_label(request),
            status=response.status,
            duration_ms=duration_ms,
            client_ip=request_client_ip(request),
            request_id=request_id(request),
        )

    return log_access
