"""Prometheus metrics, correct across worker processes.

`manas360 serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers
start, so every worker writes its samples to shared memory-mapped files and `/metrics`
(on any worker) reports the sum over all of them. Without that variable (in-process tests,
scripts) the ordinary per-process registry is used.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sanic import Request
from sanic.response import BaseHTTPResponse

from manas360.http.sanic_types import App
from manas360.server import MULTIPROC_ENV
from manas360.settings import IPNetwork

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

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
MAILS_SENT = Counter("manas360_mails_sent_total", "Mails delivered to the SMTP server", ["kind"])
MAIL_FAILURES = Counter("manas360_mail_failures_total", "Failed mail delivery attempts (each is retried)", ["kind"])
for _kind in ("password_reset", "email_verification"):  # exported at 0 from the start, for rates and alerts
    MAILS_SENT.labels(_kind)
    MAIL_FAILURES.labels(_kind)
STORE_ERRORS = Counter("manas360_store_errors_total", "Requests failed by a backing store", ["store"])
DB_POOL = Gauge("manas360_db_pool_connections", "PostgreSQL pool connections per state",
                ["state"], multiprocess_mode="livesum")
WORKER_MEMORY = Gauge("manas360_worker_memory_bytes", "Resident memory of each worker", ["pid"],
                      multiprocess_mode="liveall")
WORKER_MEMORY_LIMIT = Gauge("manas360_worker_memory_limit_bytes", "Memory limit applying to a worker",
                            multiprocess_mode="liveall")


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
    """The exposition text for every worker (multiprocess) or this process."""
    refresh_gauges()
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated upstream
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def refresh_gauges() -> None:
    """Sample this worker's pool and memory (called at scrape time and periodically)."""
    from manas360.services.health import database_pool_stats, memory_stats

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
    return "/" + request.route.path.lstrip("/") if request.route is not None else "unmatched"


def request_started(request: Request) -> float | None:
    """When the per-request timer started (perf_counter), if it ran for this request."""
    started: float | None = getattr(request.ctx, "metrics_started", None)  # set by start_timer
    return started


def component_label(component: str) -> str:
    """A 503's component list ("database", "redis", "database,redis") or "other"."""
    parts = component.split(",")
    return ",".join(sorted(parts)) if set(parts) <= KNOWN_COMPONENTS else OTHER


def install_metrics(app: App) -> None:
    """Count and time every request by route template (not raw path) and known method:
    bounded cardinality whatever the client sends."""

    # labels() hashes and locks on every call; the label sets are few, so keep the children.
    counters: dict[tuple[str, str, str], Counter] = {}
    histograms: dict[tuple[str, str], Histogram] = {}

    @app.middleware("request", priority=99)
    async def start_timer(request: Request) -> None:
        request.ctx.metrics_started = time.perf_counter()

    @app.middleware("response", priority=99)
    async def observe(request: Request, response: BaseHTTPResponse) -> None:
        started = request_started(request)
        route = route_label(request)
        # The cache is keyed by the labels, not the raw method: it is as bounded as they are.
        key = (route, method_label(request.method), status_label(response.status))
        counter = counters.get(key)
        if counter is None:
            counter = counters[key] = HTTP_REQUESTS.labels(*key)
        counter.inc()
        if started is not None:
            histogram = histograms.get(key[:2])
            if histogram is None:
                histogram = histograms[key[:2]] = HTTP_LATENCY.labels(*key[:2])
            histogram.observe(time.perf_counter() - started)
        if response.status == 503:
            component = getattr(request.ctx, "unavailable", None)
            if component:
                STORE_ERRORS.labels(component_label(str(component))).inc()

    @app.after_server_stop
    async def forget_worker_gauges(app: App) -> None:
        worker_stopped(os.getpid())
