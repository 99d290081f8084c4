"""Prometheus metrics, correct across worker processes, nearly free per request.

`manas360 serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers
start, so every worker writes its samples to shared memory-mapped files and `/metrics`
(on any worker) reports the sum over all of them. Without that variable (in-process tests,
scripts) the ordinary per-process registry is used.

This module is a leaf: the series and the in-memory tallies any layer may count into. The
HTTP side (the per-request stats, the response hook's observer, /metrics) is
manas360/http/metrics.py.

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

import os
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, multiprocess

from manas360.metrics_dir import MULTIPROC_ENV

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PUBLISH_INTERVAL_S = 1.0

HTTP_REQUESTS = Counter("manas360_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "manas360_http_request_duration_seconds",
    "Time from request to response",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
LOGINS = Counter("manas360_logins_total", "Login attempts by outcome", ["outcome"])
LOCKOUTS = Counter("manas360_lockouts_total", "Accounts (or unknown emails) locked after repeated failures")
REFRESH_REUSE = Counter("manas360_refresh_reuse_detected_total", "Rotated refresh tokens presented again")
MFA_FAILURES = Counter("manas360_mfa_failures_total", "Second-factor checks refused, by reason", ["reason"])
PASSKEY_FAILURES = Counter(
    "manas360_passkey_failures_total",
    "Passkey assertions refused, by reason (`unknown_credential`, `assertion`, `counter`)",
    ["reason"],
)
INTROSPECTIONS = Counter(
    "manas360_introspections_total", "Introspection calls by answer (`unauthorized`: no valid service key)", ["result"]
)
RATE_LIMIT_BLOCKS = Counter("manas360_rate_limit_blocks_total", "Requests refused by a rate limit", ["policy"])
RATE_LIMIT_FAIL_OPEN = Counter(
    "manas360_rate_limit_fail_open_total", "Public requests let through because Redis failed during the limit check"
)
ENTITLEMENT_CACHE = Counter("manas360_entitlement_cache_total", "User-context lookups in Redis", ["result"])
TOKEN_CACHE = Counter(
    "manas360_token_cache_total",
    "Access-token verifications by whether the verified-token cache answered (hit) or "
    "PyJWT ran (miss); hit rate = rate(hit) / rate(all)",
    ["result"],
)
TOKEN_CACHE_ENTRIES = Gauge(
    "manas360_token_cache_entries", "Verified tokens cached, summed over workers", multiprocess_mode="livesum"
)
MAILS_SENT = Counter("manas360_mails_sent_total", "Mails delivered to the SMTP server", ["kind"])
MAIL_FAILURES = Counter("manas360_mail_failures_total", "Failed mail delivery attempts (each is retried)", ["kind"])
MAILS_DISCARDED = Counter(
    "manas360_mails_discarded_total",
    "Mails not sent because the link they carry was used, voided or expired first",
    ["kind"],
)
OUTBOX_DEAD = Counter(
    "manas360_outbox_dead_letters_total", "Outbox rows given up after OUTBOX_MAX_AGE_S undelivered", ["kind"]
)
OUTBOX_ROWS = Gauge(
    "manas360_outbox_rows",
    "Outbox rows waiting (pending) or given up (dead), as the senders last counted them",
    ["state"],
    multiprocess_mode="livemax",
)
for _kind in ("password_reset", "email_verification", "security_notice"):  # at 0 from the start, for alerts
    MAILS_SENT.labels(_kind)
    MAIL_FAILURES.labels(_kind)
    OUTBOX_DEAD.labels(_kind)
WEBHOOKS_SENT = Counter("manas360_webhooks_sent_total", "Webhook events the receiver accepted (2xx)", ["kind"])
WEBHOOK_FAILURES = Counter(
    "manas360_webhook_failures_total", "Failed webhook delivery attempts (each is retried)", ["kind"]
)
WEBHOOK_ROWS = Gauge(
    "manas360_webhook_rows",
    "Webhook events waiting (pending) or given up (dead), as the senders last counted them",
    ["state"],
    multiprocess_mode="livemax",
)
STORE_ERRORS = Counter("manas360_store_errors_total", "Requests failed by a backing store", ["store"])
DB_POOL = Gauge(
    "manas360_db_pool_connections", "PostgreSQL pool connections per state", ["state"], multiprocess_mode="livesum"
)
WORKER_MEMORY = Gauge(
    "manas360_worker_memory_bytes", "Resident memory of each worker", ["pid"], multiprocess_mode="liveall"
)
WORKER_MEMORY_LIMIT = Gauge(
    "manas360_worker_memory_limit_bytes", "Memory limit applying to a worker", multiprocess_mode="liveall"
)


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
