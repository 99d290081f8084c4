"""The types of this service's Sanic app and of its requests, for annotations.

`create_app` builds `Sanic(name, ctx=AppContext(), request_class=AppRequest)`, so `app.ctx`
is an AppContext and every request's `ctx` a RequestContext: mypy checks each attribute
read and written on them. The attribute types come from the layers that own them; they are
imported for annotations only (tests/foundation/test_architecture.py lets annotations
name any layer).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import TYPE_CHECKING

from sanic import Request, Sanic
from sanic.config import Config

if TYPE_CHECKING:
    from manas360.container import Collaborators
    from manas360.edge.ratelimit import EdgeLimiter
    from manas360.edge.startup_stop import StartupStop
    from manas360.rate_policies import RatePolicy
    from manas360.services.access.entitlements import Access
    from manas360.services.auth.principal import Principal
    from manas360.services.ops.health import ReadinessCache
    from manas360.store.entitlements import ClientCheck
    from manas360.store.ratelimit import Verdict


class AppContext(SimpleNamespace):
    """What the app keeps for its lifetime (`app.ctx`)."""

    deps: Collaborators
    """The long-lived collaborators handlers hand to services (manas360.container)."""
    edge: EdgeLimiter
    edge_flusher: asyncio.Task[None]
    catalog_watch: asyncio.Task[None]
    mail_sender: asyncio.Task[None] | None
    webhook_sender: asyncio.Task[None] | None
    startup_stop: StartupStop
    metrics_publisher: asyncio.Task[None] | None = None
    readiness_cache: ReadinessCache | None = None
    openapi_document: bytes | None = None


class RequestContext(SimpleNamespace):
    """What one request carries (`request.ctx`). Every attribute has a class-level default, so
    building a context sets nothing and reading one not set is None (the hot path builds one
    per request: as cheap as the plain namespace it replaces)."""

    metrics_started: float | None = None
    """perf_counter() when the request hook started timing it."""
    request_id: str | None = None
    client_address: tuple[str, str] | None = None
    """(client IP, rate address), resolved once (manas360.edge.client)."""
    rate_verdicts: list[Verdict] | None = None
    client_check: ClientCheck[RatePolicy] | None = None
    """The per-IP limit the edge left to the guard's round trip."""
    access: Access
    """Set by the guard (blueprints/guard.py) before a guarded handler runs; unset before."""
    principal: Principal
    unavailable: str | None = None
    """The component a 503 names (metrics)."""


App = Sanic[Config, AppContext]


class AppRequest(Request[App, RequestContext]):
    """The request class of the app: its `ctx` is a RequestContext."""

    @staticmethod
    def make_context() -> RequestContext:
        return RequestContext()
