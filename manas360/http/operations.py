"""What a route is in the API contract, declared once on its handler (`@operation(...)`).

The declaration names the pydantic models the handler validates its input with (`body`,
`query`, `path`) and renders its answers from (`responses`), plus its operationId, tag and
texts; manas360.http.openapi reads it from the route table to build the OpenAPI document. The
error statuses each operation can really return are derived here from what it takes (a body
can be 400/422, a guard 401/403, an id 404) plus the ones it names itself, so a new route
cannot forget the envelope statuses every route shares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from manas360.http.schemas import ErrorEnvelope

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__manas360_operation__"

TEXT_PLAIN = "text/plain"
"""A `responses` value: a plain-text body (GET /metrics)."""

# Statuses any request can meet before or around its handler: a malformed request (400),
# a client too slow to send it (408), a body or head over the limits (413, 431), a crash
# (500) and a backing store down or a worker draining (503).
ALWAYS = (400, 408, 413, 431, 500, 503)

CODES: dict[int, tuple[str, ...]] = {
    400: ("BadRequest",),
    401: ("Unauthorized", "InvalidToken", "TokenExpired", "TokenRevoked"),
    403: ("AccountDisabled", "AccountPendingDeletion"),
    404: ("NotFound",),
    408: ("RequestTimeout",),
    413: ("PayloadTooLarge",),
    422: ("ValidationError",),
    423: ("AccountLocked",),
    429: ("RateLimited",),
    431: ("RequestHeaderFieldsTooLarge",),
    500: ("InternalError",),
    503: ("ServiceUnavailable",),
}
"""The envelope codes of each status (docs/api.md), before an operation's own additions."""


@dataclass(frozen=True)
class Operation:
    id: str
    tag: str
    summary: str
    description: str
    responses: Mapping[int, type[BaseModel] | str | None]
    """Success statuses: a model (JSON), TEXT_PLAIN, or None (no body)."""
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path: type[BaseModel] | None = None
    secured: bool = False
    service_key: bool = False
    """Called by another service with a key of INTROSPECTION_KEYS (not a user's token)."""
    rate_limited: bool = True
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    """Error statuses beyond the derived ones, with the codes they add."""
    error_model: type[ErrorEnvelope] = ErrorEnvelope

    def error_codes(self) -> dict[int, tuple[str, ...]]:
        """Every error status the operation can answer, with its envelope codes."""
        statuses: dict[int, list[str]] = {status: [] for status in ALWAYS}
        derived = [
            (401, self.secured),
            (403, self.secured),
            (429, self.rate_limited),
            (422, self.body is not None or self.query is not None),
            (404, self.path is not None),
        ]
        for status, applies in derived:
            if applies:
                statuses.setdefault(status, [])
        for status, extra in self.errors.items():
            statuses.setdefault(status, []).extend(extra)
        for status, codes in statuses.items():
            if status not in (401, 403) or self.secured:
                codes[:0] = CODES.get(status, ())
        return {status: tuple(dict.fromkeys(codes)) for status, codes in sorted(statuses.items())}


def operation(
    *,
    id: str,
    tag: str,
    summary: str,
    description: str = "",
    responses: Mapping[int, type[BaseModel] | str | None],
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    path: type[BaseModel] | None = None,
    secured: bool = False,
    service_key: bool = False,
    rate_limited: bool = True,
    errors: Mapping[int, tuple[str, ...]] | None = None,
    error_model: type[ErrorEnvelope] = ErrorEnvelope,
) -> Callable[[F], F]:
    """Declare a handler's place in the contract (read by manas360.http.openapi)."""
    declared = Operation(
        id=id,
        tag=tag,
        summary=summary,
        description=description,
        responses=responses,
        body=body,
        query=query,
        path=path,
        secured=secured,
        service_key=service_key,
        rate_limited=rate_limited,
        errors=errors or {},
        error_model=error_model,
    )

    def decorator(handler: F) -> F:
        setattr(handler, ATTRIBUTE, declared)
        return handler

    return decorator


def declared(handler: Callable[..., Any]) -> Operation | None:
    found: Operation | None = getattr(handler, ATTRIBUTE, None)
    return found
