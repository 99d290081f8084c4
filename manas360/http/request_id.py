"""The request id: the client's X-Request-ID when sane, else one of ours."""

from __future__ import annotations

import os
import random
import re
import secrets

from manas360.http.sanic_types import AppRequest
from manas360.logs import request_id_var

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ids = random.Random()  # seeded from os.urandom; reseeded in a forked child, so no two
os.register_at_fork(after_in_child=_ids.seed)  # worker processes ever share a sequence


def request_id(request: AppRequest | None) -> str:
    """The request's id: the client's X-Request-ID when sane, else a new one (once)."""
    if request is None:
        return request_id_var.get() if request_id_var.get() != "-" else secrets.token_hex(16)
    rid = getattr(request.ctx, "request_id", None)
    if rid is None:
        sent = request.headers.get("x-request-id", "")
        # A correlation id, not a secret (a client may choose its own): 128 bits from the
        # worker's PRNG (seeded from the OS at start) look like token_hex(16) without a
        # getrandom() system call per request.
        rid = sent if sent and _SANE_REQUEST_ID.match(sent) else f"{_ids.getrandbits(128):032x}"
        request.ctx.request_id = rid
    return rid
