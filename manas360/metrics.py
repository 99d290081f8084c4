"""Prometheus metrics, correct across worker processes, nearly free per request.

`manas360 serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers
start, so every worker writes its samples to shared memory-mapped files and `/metrics`
(on any worker) reports the sum over all of them. Without that variable (in-process tests,
scripts) the ordinary per-process registry is used.

The per-request series (requests, latency buckets, cache hits) are not written to those
files per request: each worker adds to plain integers in its own memory (`Tally`, the
`HttpStats` of install_metrics) and `publish()` moves the sums into the Prometheus
children, off the request path: every PUBLISH_INTERVAL_S, at every scrape this worker
answers, and when the worker stops. So a scrape sees another worker's last requests at
most PUBLISH_INTERVAL_S late; nothing is lost or sampled. (A prometheus_client write in
multiprocess mode takes a lock and writes a memory-mapped file: a histogram observation
was several of those per request.)
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import ipaddress
import os
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sanic import Request

from manas360.http.sanic_types import App
from manas360.security.jwt import AccessTokenCodec
from manas360.server import MULTIPROC_ENV
from manas360.settings import IPNetwork

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PUBLISH_INTERVAL_S = 1.0

HTTP_REQUESTS = Counter("manas360_http_requests_total", "HTTP requests answered",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("manas360_http_request_duration_seconds", "Time from request to response",
                         ["route", "method"], buckets=LATENCY_BUCKETS)
LOGINS = Counter("manas360_logins_total", "Login attempts by outcome", ["outcome"])
LOCKOUTS = Counter("manas360_lockouts_total", "Accounts (or unknown emails) locked after repeated failures")
REFRESH_REUSE = Counter("manas360_refresh_reuse_detected_total", "Rotated refresh tokens presented again")
MFA_FAILURES = Counter("manas360_mfa_failures_total", "Second-factor checks refused, by reason", ["reason"])
RATE_LIMIT_BLOCKS = Counter("manas360_rate_limit_blocks_total", "Requests refused by a rate limit", ["policy"])
RATE_LIMIT_FAIL_OPEN = Counter("manas360_rate_limit_fail_open_total",
                               "Public requests let through because Redis failed during the limit check")
ENTITLEMENT_CACHE = Counter("manas360_entitlement_cache_total", "User-context lookups in Redis", ["result"])
TOKEN_CACHE = Counter("manas360_token_cache_total",
                      "Access-token verifications by whether the verified-token cache answered (hit) or "
                      "PyJWT ran (miss); hit rate = rate(hit) / rate(all)", ["result"])
TOKEN_CACHE_ENTRIES = Gauge("manas360_token_cache_entries", "Verified tokens cached, summed over workers",
                            multiprocess_mode="livesum")
MAILS_SENT = Counter("manas360_mails_sent_total", "Mails delivered to the SMTP server", ["kind"])
MAIL_FAILURES = Counter("manas360_mail_failures_total", "Failed mail delivery attempts (each is retried)", ["kind"])
MAILS_DISCARDED = Counter("manas360_mails_discarded_total",
                          "Mails not sent because the link they carry was used, voided or expired first", ["kind"])
OUTBOX_DEAD = Counter("manas360_outbox_dead_letters_total",
                      "Outbox rows given up after OUTBOX_MAX_AGE_S undelivered", ["kind"])
OUTBOX_ROWS = Gauge("manas360_outbox_rows", "Outbox rows waiting (pending) or given up (dead), as the senders "
                    "last counted them", ["state"], multiprocess_mode="livemax")
for _kind in ("password_reset", "email_verification", "security_notice"):  # at 0 from the start, for alerts
    MAILS_SENT.labels(_kind)
    MAIL_FAILURES.labels(_kind)
    OUTBOX_DEAD.labels(_kind)
STORE_ERRORS = Counter("manas360_store_errors_total", "Requests failed by a backing store", ["store"])
DB_POOL = Gauge("manas360_db_pool_connections", "PostgreSQL pool connections per state",
                ["state"], multiprocess_mode="livesum")
WORKER_MEMORY = Gauge("manas360_worker_memory_bytes", "Resident memory of each worker", ["pid"],
                      multiprocess_mode="liveall")
WORKER_MEMORY_LIMIT = Gauge("manas360_worker_memory_limit_bytes", "Memory limit applying to a worker",
                            multiprocess_mode="liveall")


class Tally:
    """One labelled counter series, counted in this worker's memory and published by
    `publish()`: an increment on the request path is one integer addition."""

    __slots__ = ("_child", "pending")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.pending = 0

    def inc(self, amount: int = 1) -> None:
        self.pending += amount

    def publish(self) -> None:
        amount, self.pending = self.pending, 0
        if amount:
            self._child.inc(amount)


ENTITLEMENT_HITS = Tally(ENTITLEMENT_CACHE.labels("hit"))
ENTITLEMENT_MISSES = Tally(ENTITLEMENT_CACHE.labels("miss"))
_TALLIES = (ENTITLEMENT_HITS, ENTITLEMENT_MISSES)
_publishers: list[Callable[[], None]] = []
"""What publish() runs besides the tallies (install_metrics's HTTP stats, the token cache)."""


def publish() -> None:
    """Move this worker's in-memory counts into the Prometheus series (and so, in
    multiprocess mode, into the files every worker's /metrics reads)."""
    for tally in _TALLIES:
        tally.publish()
    for publisher in _publishers:
        publisher()


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


def render() -> tuple[bytes, str]:
    """The exposition text for every worker (multiprocess) or this process; this worker's
    own counts are published first, the others' are at most PUBLISH_INTERVAL_S old."""
    publish()
    refresh_gauges()
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated upstream
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def refresh_gauges() -> None:
    """Sample this worker's pool and memory (called at scrape time and periodically)."""
    from manas360.services.ops.health import database_pool_stats, memory_stats

    try:
        pool = database_pool_stats()
    except Exception:  # no ORM context in this process (e.g. a script): nothing to report
        pool = {}
    for state in ("size", "in_use", "idle", "max", "waiting"):
        DB_POOL.labels(state).set(pool.get(state, 0))
    WORKER_MEMORY.labels(str(os.getpid())).set(memory_stats()["rss_bytes"])
    WORKER_MEMORY_LIMIT.set(memory_limit_bytes())


def memory_limit_bytes() -> int:
    """The cgroup memory limit if there is one, else the machine's memory."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = open(path).read().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 1 << 60:
            return int(value)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def worker_stopped(pid: int) -> None:
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # unannotated upstream


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


def route_label(request: Request) -> str:
    """The matched route's template ("/api/v1/admin/users/<user_id>"), or "unmatched":
    never the raw path, which carries ids and whatever else the client puts in it."""
    route = request.route
    if route is None:
        return "unmatched"
    label: str | None = getattr(route.ctx, "metrics_label", None)  # built once per route
    if label is None:
        label = route.ctx.metrics_label = "/" + route.path.lstrip("/")
    return label


def request_started(request: Request) -> float | None:
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


def observe_response(stats: HttpStats, request: Request, status: int) -> None:
    """Count and time one answered request (the response hook calls this)."""
    started = request_started(request)
    stats.observe(route_label(request), method_label(request.method), status_label(status),
                  None if started is None else time.perf_counter() - started)
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
