"""Rate limits at the edge: the request check, the RateLimit headers, and the seam the
authentication guard uses for the per-user `api` policy.

Per request: every policy that applies (manas360.edge.policies) is checked in table order,
`global` first, and the first denial stops the request with 429 `RateLimited`. So a request
refused by `global` spends nothing of its route's policy, while one refused by a route
policy has spent one unit of `global` (it did reach the server). Each verdict is kept in
`request.ctx.rate_verdicts` and rendered as `RateLimit-Policy`/`RateLimit` on the response,
error responses included.

On a guarded route whose only edge policy is the per-IP `global` one (single node), the
edge does not call Redis: it leaves the check to the authentication guard (`request.ctx.client_check`),
which sends it in the same round trip as the user's checks, first, with the same
semantics (a request it refuses reads and counts nothing of the user's). A request the
guard refuses before Redis (no token, a bad one) is checked on its own.

Redis failing during a check: a `fail_open` policy lets the request through, logs a
warning and counts it; the limiter then stops asking Redis for STORE_RETRY_S (a stalled
Redis would otherwise cost every request its socket timeout). A fail-closed policy answers
503 instead.
"""

from __future__ import annotations

import time

from loguru import logger
from sanic.response import BaseHTTPResponse

from manas360 import errors
from manas360.edge.blocklog import BlockLog
from manas360.edge.client import request_rate_address
from manas360.edge.policies import PolicyMap, rate_limited, route_path
from manas360.edge.ratelimit_headers import format_headers
from manas360.http.sanic_types import AppRequest
from manas360.metrics import RATE_LIMIT_BLOCKS, RATE_LIMIT_FAIL_OPEN
from manas360.rate_policies import RatePolicy
from manas360.store import Store, StoreUnavailable
from manas360.store.entitlements import ClientCheck
from manas360.store.ratelimit import Verdict, hit

__all__ = ["EdgeLimiter", "apply_verdict", "rate_limited", "user_rate_key"]

STORE_RETRY_S = 1.0
# redis-py raises RedisError subclasses; a socket-level failure may surface as OSError.
_STORE_ERRORS = (StoreUnavailable, OSError)


class EdgeLimiter:
    """One per app (per worker): the policy map, the block log and the Redis breaker."""

    def __init__(self, *, policies: PolicyMap, block_log: BlockLog) -> None:
        self.policies = policies
        self.block_log = block_log
        self._store_down_until = 0.0

    async def check(self, request: AppRequest) -> None:
        """Check the request against its policies; raise RateLimited on the first denial."""
        if getattr(request.ctx, "rate_verdicts", None) is not None:
            return  # already checked (Sanic re-enters middleware on some error paths)
        if self.policies.is_exempt(request.path) or _is_preflight(request):
            return
        request.ctx.rate_verdicts = []
        store = request.app.ctx.deps.store
        policies = self.policies.for_request(request)
        # Not on a cluster: there the client's counter lives on another node than the user's
        # keys, and a fail-open policy must keep serving the user while that node is down.
        if (
            not store.cluster
            and len(policies) == 1
            and policies[0].key == "ip"
            and self.policies.is_guarded(request)
            and time.monotonic() >= self._store_down_until
        ):
            policy = policies[0]
            key, log_key = _request_key(request, policy, store)
            # Only the facts: a callable bound to the request, kept on the request's own ctx,
            # would make every guarded request a reference cycle, freed only by the cyclic GC
            # (whose full collections then stalled a worker for ~70 ms under load).
            request.ctx.client_check = ClientCheck(policy=policy, key=key, log_key=log_key)
            return
        for policy in policies:
            await self._check_one(request, store, policy)

    async def check_deferred_alone(self, request: AppRequest, deferred: ClientCheck[RatePolicy]) -> None:
        """The per-IP check this edge left to the guard (`request.ctx.client_check`), run
        on its own: for a request the guard refuses before Redis."""
        await self._check_one(request, request.app.ctx.deps.store, deferred.policy)

    async def _check_one(self, request: AppRequest, store: Store, policy: RatePolicy) -> None:
        key, log_key = _request_key(request, policy, store)
        verdict = await self._hit(store, policy=policy, key=key)
        if verdict is not None:
            apply_verdict(request, verdict, log_key=log_key)

    async def _hit(self, store: Store, *, policy: RatePolicy, key: str) -> Verdict | None:
        if time.monotonic() < self._store_down_until:
            return self._store_failed(policy, None)
        try:
            verdict = await hit(store, policy=policy.name, key=key, limit=policy.limit, window_s=policy.window_s)
        except _STORE_ERRORS as exc:
            self._store_down_until = time.monotonic() + STORE_RETRY_S
            return self._store_failed(policy, exc)
        return verdict

    @staticmethod
    def _store_failed(policy: RatePolicy, exc: BaseException | None) -> None:
        if not policy.fail_open:
            raise errors.ServiceUnavailable("Rate limiter unavailable", component="redis") from exc
        RATE_LIMIT_FAIL_OPEN.inc()
        if exc is not None:  # once per breaker opening, not once per request
            logger.warning(
                "rate limit {!r} failed open for {}s: Redis error {}", policy.name, STORE_RETRY_S, type(exc).__name__
            )
        return None


def _is_preflight(request: AppRequest) -> bool:
    # A CORS preflight is the browser's bookkeeping for the request that follows (which is
    # charged); it does no work and is cached for CORS_MAX_AGE. Charging it would halve a
    # browser client's budget.
    headers = request.headers
    return request.method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def _request_key(request: AppRequest, policy: RatePolicy, store: Store) -> tuple[str, str]:
    """The Redis key a policy counts this request under, and what the block log records."""
    address = request_rate_address(request)
    if policy.key == "ip":
        return store.keys.ip_rate(address, policy.name), f"ip:{address}"
    if request.route is None:  # settings refuse an ip+route policy applying to every request
        raise ValueError(f"policy {policy.name!r} is keyed by route, and this request matched none")
    method = "GET" if request.method == "HEAD" else request.method
    route = f"{method} {route_path(request.route)}"
    return store.keys.ip_rate(address, policy.name, route.replace(" ", "")), f"ip:{address} {route}"


def apply_verdict(request: AppRequest, verdict: Verdict, *, log_key: str) -> None:
    """Attach a verdict to the response's RateLimit headers; a denial is logged and raised.

    `log_key` is what rate_limit_logs records: "ip:<address>" or "u:<user id>", never a
    token, an email or anything secret. Raises RateLimited (429) when the verdict denies.
    """
    verdicts = getattr(request.ctx, "rate_verdicts", None)
    if verdicts is None:
        verdicts = request.ctx.rate_verdicts = []
    verdicts.append(verdict)
    if not verdict.allowed:
        request.app.ctx.edge.block_log.record(policy=verdict.policy, key=log_key, window_s=verdict.window_s)
        RATE_LIMIT_BLOCKS.labels(verdict.policy).inc()
        raise errors.RateLimited(retry_after=verdict.reset_s)


def user_rate_key(store: Store, *, user_id: str, policy: str = "api") -> tuple[str, str]:
    """The Redis key of a user's per-user policy (in the user's hash tag) and its log key."""
    return store.keys.user_rate(user_id, policy), f"u:{user_id}"


def add_rate_headers(request: AppRequest, response: BaseHTTPResponse) -> None:
    """RateLimit-Policy, RateLimit (and Retry-After on a denial) from the request's verdicts."""
    verdicts = getattr(request.ctx, "rate_verdicts", None)
    if verdicts:
        headers = response.headers
        for name, value in format_headers(verdicts).items():
            headers[name] = value
