"""Which rate-limit policies a request is under.

Every request gets the table's `every-request` policies (unless its path is exempt); a
route adds the policies it declares with `@rate_limited(...)` and those whose `routes` in
config/ratelimits.toml name it. Resolved once per route, then read from the route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from loguru import logger
from sanic_routing.route import Route

from manas360.http.sanic_types import AppRequest
from manas360.rate_policies import RatePolicy
from manas360.settings import Settings

_DECLARED = "__rate_policies__"
GUARDED_MARK = "__m360_guarded__"
"""Set by the authentication guard (blueprints.guard) on its wrapper, naming the wrapper:
see PolicyMap.is_guarded."""
Handler = TypeVar("Handler", bound=Callable[..., Any])


def rate_limited(*names: str) -> Callable[[Handler], Handler]:
    """Put a route handler under the named policies (besides the every-request ones).

    The names are checked against the policy table when the server starts: an unknown
    name, or one that is not a per-route policy, stops the start.
    """

    def decorator(handler: Handler) -> Handler:
        setattr(handler, _DECLARED, tuple(dict.fromkeys((*getattr(handler, _DECLARED, ()), *names))))
        return handler

    return decorator


def route_path(route: Route) -> str:
    """The route's path as written in the table: "/api/v1/auth/login", params included."""
    return "/" + route.path.strip("/")


def _declared(route: Route) -> tuple[str, ...]:
    # sanic-ext's automatic HEAD route wraps the GET handler and keeps it here.
    handler = getattr(route.handler, "__route_handler__", route.handler)
    declared: tuple[str, ...] = getattr(handler, _DECLARED, ())  # set by rate_limited only
    return declared


def _table_method(method: str) -> str:
    # HEAD does the work of GET: it must not be a second budget for the same route.
    return "GET" if method == "HEAD" else method


class PolicyMap:
    def __init__(self, settings: Settings) -> None:
        self._policies = settings.rate_policies
        self._exempt = frozenset(settings.rate_exempt_paths)
        self._exempt_below = tuple(prefix + "/" for prefix in settings.rate_exempt_paths)
        self.every_request = tuple(p for p in self._policies.values() if p.applies == "every-request")
        self._listed: dict[tuple[str, str], list[RatePolicy]] = {}
        for policy in self._policies.values():
            for spec in policy.routes:
                self._listed.setdefault(spec, []).append(policy)

    def is_exempt(self, path: str) -> bool:
        return path in self._exempt or path.startswith(self._exempt_below)

    def for_request(self, request: AppRequest) -> tuple[RatePolicy, ...]:
        route = request.route
        if route is None:
            return self.every_request
        by_method = getattr(route.ctx, "rate_policies", None)
        if by_method is None:
            by_method = route.ctx.rate_policies = self._resolve(route)
        return by_method.get(request.method, self.every_request)

    def is_guarded(self, request: AppRequest) -> bool:
        """Whether the request's route runs the authentication guard (blueprints.guard),
        which can take the per-IP limit into its own round trip."""
        route = request.route
        if route is None:
            return False
        guarded: bool | None = getattr(route.ctx, "guarded", None)
        if guarded is None:
            handler = getattr(route.handler, "__route_handler__", route.handler)
            # The mark names the guard itself: a decorator wrapping the guard (functools.wraps
            # copies the mark) could answer before the guard runs, so the limit stays here.
            guarded = route.ctx.guarded = getattr(handler, GUARDED_MARK, None) is handler
        return guarded

    def _resolve(self, route: Route) -> dict[str, tuple[RatePolicy, ...]]:
        path, declared = route_path(route), _declared(route)
        resolved: dict[str, tuple[RatePolicy, ...]] = {}
        for method in route.methods:
            listed = [p.name for p in self._listed.get((_table_method(method), path), ())]
            names = dict.fromkeys((*declared, *listed))
            resolved[method] = self.every_request + tuple(self._policies[name] for name in names)
        return resolved

    def check_routes(self, routes: Iterable[Route]) -> None:
        """Refuse declarations naming no per-route policy; warn of table routes that match nothing."""
        seen: set[tuple[str, str]] = set()
        for route in routes:
            for name in _declared(route):
                policy = self._policies.get(name)
                if policy is None or policy.applies != "routes":
                    raise ValueError(
                        f"route {route_path(route)} declares rate-limit policy {name!r}, "
                        "which is not a per-route policy of the policy table"
                    )
            seen.update((_table_method(method), route_path(route)) for method in route.methods)
        for method, path in self._listed:
            if (method, path) not in seen:
                # A typo here would leave a route (say, login) without its limit: say so loudly.
                logger.warning("rate-limit policy table names {} {}, which is not a route of this app", method, path)
