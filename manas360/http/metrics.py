"""The HTTP side of the Prometheus metrics (manas360.metrics holds the series): the
per-request stats the response hook feeds, their periodic publication, and /metrics."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import ipaddress
import os
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from manas360.db import Database
from manas360.http.sanic_types import App, AppRequest
from manas360.metrics import (
    DB_POOL,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    LATENCY_BUCKETS,
    PUBLISH_INTERVAL_S,
    STORE_ERRORS,
    TOKEN_CACHE,
    TOKEN_CACHE_ENTRIES,
    WORKER_MEMORY,
    WORKER_MEMORY_LIMIT,
    Tally,
    _publishers,
    memory_limit_bytes,
    publish,
    worker_stopped,
)
from manas360.metrics_dir import MULTIPROC_ENV
from manas360.security.jwt import AccessTokenCodec
from manas360.settings_checks import IPNetwork


class HttpStats:
    """Requests by (route, method, status) and latency buckets by (route, method), in this
    worker's memory until published. Label values come from bounded sets (route templates,
    known methods, status codes), so the dictionaries are as bounded as the series."""

    def __init__(self) -> None:
        self._bounds = LATENCY_BUCKETS
        self.requests: dict[tuple[str, str, str], int] = {}
        # (route, method) -> [count per bucket..., +Inf count, sum of seconds]
        self.latency: dict[tuple[str, str], list[float]] = {}

    def observe(self, route: str, method: str, status: str, seconds: float | None) -> None:
        key = (route, method, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        if seconds is not None:
            cell = self.latency.get(key[:2])
            if cell is None:
                cell = self.latency[key[:2]] = [0.0] * (len(self._bounds) + 2)
            cell[bisect.bisect_left(self._bounds, seconds)] += 1
            cell[-1] += seconds

    def publish(self) -> None:
        requests, self.requests = self.requests, {}
        for labels, n in requests.items():
            HTTP_REQUESTS.labels(*labels).inc(n)
        latency, self.latency = self.latency, {}
        for pair, cell in latency.items():
            child = HTTP_LATENCY.labels(*pair)
            # prometheus_client keeps one non-cumulative value per bucket (+Inf last) and the
            # sum; adding to them is what observe() does, once per bucket instead of per request
            # (tests/operations/test_metrics.py checks the exposition across workers).
            for index, observed in enumerate(cell[:-1]):
                if observed:
                    child._buckets[index].inc(observed)
            child._sum.inc(cell[-1])


def scrape_allowed(*, client_ip: str, networks: Iterable[IPNetwork], token: str, authorization: str | None) -> bool:
    """A scraper from an allowed network, or one presenting the configured token."""
    if token:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def render(db: Database) -> tuple[bytes, str]:
    """The exposition text for every worker (multiprocess) or this process; this worker's
    own counts are published first, the others' are at most PUBLISH_INTERVAL_S old."""
    publish()
    refresh_gauges(db)
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated upstream
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def refresh_gauges(db: Database) -> None:
    """Sample this worker's pool and memory (at scrape time)."""
    from manas360.services.ops.health import memory_stats

    pool = db.pool_stats()
    for state in ("size", "in_use", "idle", "max", "waiting"):
        DB_POOL.labels(state).set(pool.get(state, 0))
    WORKER_MEMORY.labels(str(os.getpid())).set(memory_stats()["rss_bytes"])
    WORKER_MEMORY_LIMIT.set(memory_limit_bytes())


# Every label value must come from a small set we choose: a label value the client picks
# (a method token, a raw path) is a new series per value, held by every worker until restart.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
KNOWN_COMPONENTS = frozenset({"database", "redis"})
OTHER = "other"


def method_label(method: str) -> str:
    """The method if it is one we serve, else "other" (any token is a valid HTTP method)."""
    return method if method in KNOWN_METHODS else OTHER


def status_label(status: int) -> str:
    """The status code, or "other" outside 100..599 (a handler bug must not mint series)."""
    return str(status) if 100 <= status <= 599 else OTHER


def route_label(request: AppRequest) -> str:
    """The matched route's template ("/api/v1/admin/users/<user_id>"), or "unmatched":
    never the raw path, which carries ids and whatever else the client puts in it."""
    route = request.route
    if route is None:
        return "unmatched"
    label: str | None = getattr(route.ctx, "metrics_label", None)  # built once per route
    if label is None:
        label = route.ctx.metrics_label = "/" + route.path.lstrip("/")
    return label


def request_started(request: AppRequest) -> float | None:
    """When the per-request timer started (perf_counter), if it ran for this request."""
    started: float | None = getattr(request.ctx, "metrics_started", None)  # set by start_timer
    return started


def component_label(component: str) -> str:
    """A 503's component list ("database", "redis", "database,redis") or "other"."""
    parts = component.split(",")
    return ",".join(sorted(parts)) if set(parts) <= KNOWN_COMPONENTS else OTHER


def install_metrics(app: App, *, codec: AccessTokenCodec) -> HttpStats:
    """Publish this worker's counts periodically and at stop; return the per-request stats
    the response hook (manas360.http.hooks) feeds: count and time every request by route
    template (not raw path) and known method, bounded cardinality whatever the client sends.
    The verified-token cache's hits, misses and size are published alongside."""
    stats = HttpStats()
    token_cache = _TokenCachePublisher(codec)

    @app.after_server_start
    async def start_publishing(app: App) -> None:
        _publishers.extend((stats.publish, token_cache.publish))
        app.ctx.metrics_publisher = asyncio.get_running_loop().create_task(_publish_periodically())

    @app.after_server_stop
    async def forget_worker_gauges(app: App) -> None:
        publisher = getattr(app.ctx, "metrics_publisher", None)
        if publisher is not None:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
        publish()  # the last requests' counts, before the worker's live gauges are dropped
        for publisher in (stats.publish, token_cache.publish):
            with contextlib.suppress(ValueError):
                _publishers.remove(publisher)
        worker_stopped(os.getpid())

    return stats


def observe_response(stats: HttpStats, request: AppRequest, status: int) -> None:
    """Count and time one answered request (the response hook calls this)."""
    started = request_started(request)
    stats.observe(
        route_label(request),
        method_label(request.method),
        status_label(status),
        None if started is None else time.perf_counter() - started,
    )
    if status == 503:
        component = getattr(request.ctx, "unavailable", None)
        if component:
            STORE_ERRORS.labels(component_label(str(component))).inc()


class _TokenCachePublisher:
    """The codec counts its cache's hits and misses in plain integers; this publishes the
    increase since the last call."""

    def __init__(self, codec: AccessTokenCodec) -> None:
        self._codec = codec
        self._hits = Tally(TOKEN_CACHE.labels("hit"))
        self._misses = Tally(TOKEN_CACHE.labels("miss"))
        self._seen = (codec.hits, codec.misses)

    def publish(self) -> None:
        codec = self._codec
        hits, misses = codec.hits, codec.misses
        self._hits.inc(hits - self._seen[0])
        self._misses.inc(misses - self._seen[1])
        self._seen = (hits, misses)
        self._hits.publish()
        self._misses.publish()
        TOKEN_CACHE_ENTRIES.set(codec.cache_entries)


async def _publish_periodically() -> None:
    while True:
        await asyncio.sleep(PUBLISH_INTERVAL_S)
        publish()
