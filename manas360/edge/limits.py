"""Request-shape limits Sanic does not enforce itself (docs/edge.md, "Input limits").

Sanic bounds the request head's size (REQUEST_MAX_HEADER_SIZE) and the body's
(REQUEST_MAX_SIZE) but not the number of header fields, and passes NUL bytes through.
RFC 9110 (5.5) says a field value holding NUL must be rejected; PostgreSQL text cannot
hold NUL either, so one reaching a query (a path parameter, a search term, a user agent
stored on a session) would fail it with a 500.
"""

from __future__ import annotations

from manas360 import errors
from manas360.http.sanic_types import AppRequest

MAX_HEADER_FIELDS = 100


def check_request_shape(request: AppRequest) -> None:
    """431 past MAX_HEADER_FIELDS header fields; for a NUL byte: 404 in the path (no
    resource has such a name), 400 in the query string or a header."""
    if len(request.headers) > MAX_HEADER_FIELDS:
        raise errors.RequestHeaderFieldsTooLarge(f"More than {MAX_HEADER_FIELDS} header fields")
    path, _, query = request.raw_url.partition(b"?")
    if b"%00" in path or b"\x00" in path:
        raise errors.NotFound()
    if b"%00" in query or _nul_in_head(request):
        raise errors.BadRequest("NUL bytes are not allowed in the query string or headers")


def _nul_in_head(request: AppRequest) -> bool:
    head = request.head
    if head:  # Sanic's own server keeps the raw request head: one memchr
        return b"\x00" in head
    return any("\x00" in value for value in request.headers.values())
