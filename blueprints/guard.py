"""Route guards and request facts shared by the blueprints: the caller's identity, live
entitlements and where the request came from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeAlias

from sanic.response import HTTPResponse

from manas360.edge import request_client_ip
from manas360.edge.client import request_rate_address
from manas360.edge.policies import GUARDED_MARK
from manas360.edge.ratelimit import apply_verdict
from manas360.http.deps import deps
from manas360.http.sanic_types import AppRequest
from manas360.services.access.entitlements import Needs, authorize
from manas360.services.auth.sessions import Client
from manas360.store.ratelimit import Verdict

P = ParamSpec("P")
# A route handler: the request, then the route's own parameters (`user_id: str`, ...).
Handler: TypeAlias = Callable[Concatenate[AppRequest, P], Awaitable[HTTPResponse]]

# openapi.definition(secured=...) for the bearer scheme that create_app registers; the
# mapping form of `secured="bearer"` (scheme name -> required scopes), which is what
# sanic-ext's signature declares.
BEARER: dict[str, Any] = {"bearer": []}


def client_ip(request: AppRequest) -> str:
    """The client's address as recorded on sessions, attempts and audit entries (the
    socket peer, or the right-most untrusted X-Forwarded-For hop behind TRUSTED_PROXIES)."""
    return request_client_ip(request)


def client(request: AppRequest) -> Client:
    """Where the request came from: address, user agent, and the lockout source (the address
    per-IP limits count it under: IPv4, or the IPv6 prefix)."""
    return Client(
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", "")[:512],
        source=request_rate_address(request),
    )


def guarded(
    *, permissions: tuple[str, ...] = (), features: tuple[str, ...] = (), min_privilege: int = 0, admin: int = 0
) -> Callable[[Handler[P]], Handler[P]]:
    """Require a valid, unrevoked bearer token and what the route needs: any of
    `permissions`, all of `features`, and at least `min_privilege`. The caller lands in
    `request.ctx.principal` and their live entitlements in `request.ctx.access`.

    One Redis round trip answers revocation, the user's context and the `api` rate limit;
    a warm request runs no SQL (manas360.services.access.entitlements).
    """
    needs = Needs(
        permissions=frozenset(permissions), features=frozenset(features), min_privilege=min_privilege, admin=admin
    )

    def decorator(handler: Handler[P]) -> Handler[P]:
        @wraps(handler)
        async def guard(request: AppRequest, /, *args: P.args, **kwargs: P.kwargs) -> HTTPResponse:
            def on_rate(verdict: Verdict, log_key: str) -> None:
                apply_verdict(request, verdict, log_key=log_key)

            app = deps(request)
            ctx = request.ctx
            # The edge's per-IP limit, when it left it to this round trip (manas360.edge.ratelimit).
            # Only a local closure holds the request: kept on ctx, it would make a reference cycle.
            client_check = getattr(ctx, "client_check", None)
            check_client_alone = None
            if client_check is not None:

                async def check_client_alone() -> None:
                    await request.app.ctx.edge.check_deferred_alone(request, client_check)

            ctx.access = access = await authorize(
                db=app.db,
                settings=app.settings,
                store=app.store,
                codec=app.codec,
                catalog=app.catalog,
                clock=app.clock,
                authorization_header=request.headers.get("authorization"),
                needs=needs,
                on_rate=on_rate,
                client_check=client_check,
                check_client_alone=check_client_alone,
            )
            ctx.principal = access.principal
            return await handler(request, *args, **kwargs)

        setattr(guard, GUARDED_MARK, guard)
        return guard

    return decorator


def authenticated() -> Callable[[Handler[P]], Handler[P]]:
    """Require a valid, unrevoked bearer token and nothing more."""
    return guarded()
