"""CORS through sanic-ext, restricted to ALLOWED_ORIGINS (docs/edge.md, "CORS")."""

from __future__ import annotations

from typing import Any

from manas360.settings import Settings

ALLOW_HEADERS = ("authorization", "content-type", "x-request-id")
EXPOSE_HEADERS = ("x-request-id", "ratelimit", "ratelimit-policy", "retry-after")
ALLOW_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PREFLIGHT_MAX_AGE_S = 600


def cors_config(settings: Settings) -> dict[str, Any]:
    """sanic-ext CORS_* settings: listed origins only, credentials only for those.

    With no origins at all, CORS is off (same answers, no per-response hook).
    An origin not listed gets no CORS header at all (sanic-ext matches each listed origin
    exactly); a request without Origin gets none either. "*" (refused in production)
    answers any origin with a literal "*" and never with credentials.
    """
    origins = list(settings.origins)
    wildcard = "*" in origins
    return {
        # No origin listed: no response gets a CORS header, so the CORS hook is not installed
        # (it would run on every response to find that out).
        "CORS": bool(origins),
        "CORS_ORIGINS": "*" if wildcard else origins,
        "CORS_SEND_WILDCARD": wildcard,
        "CORS_SUPPORTS_CREDENTIALS": bool(origins) and not wildcard,
        "CORS_ALWAYS_SEND": False,
        "CORS_AUTOMATIC_OPTIONS": True,
        # Listed, not "*": with credentials a browser takes "*" literally.
        "CORS_ALLOW_HEADERS": list(ALLOW_HEADERS),
        "CORS_EXPOSE_HEADERS": list(EXPOSE_HEADERS),
        "CORS_METHODS": list(ALLOW_METHODS),
        "CORS_MAX_AGE": PREFLIGHT_MAX_AGE_S,
    }
