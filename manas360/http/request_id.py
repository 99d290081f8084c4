"""The request id: the client's X-Request-ID when sane, else one of ours."""

from __future__ import annotations

import os
import re
import secrets

from sanic import Request

from manas360.logs import request_id_var

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(request: Request | None) -> str:
    """The request's id: the client's X-Request-ID when sane, else a new one (once)."""
    if request is None:
        return request_id_var.get() if request_id_var.get() != "-" else secrets.token_hex(16)
    rid = getattr(request.ctx, "request_id", None)
    if rid is None:
        sent = request.headers.get("x-request-id", "")
        # os.urandom directly: what secrets.token_hex(16) returns, without its two Python calls.
        rid = sent if _SANE_REQUEST_ID.match(sent) else os.urandom(16).hex()
        request.ctx.request_id = rid
    return rid
