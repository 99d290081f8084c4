"""Per-process counters of edge events, a cheap in-process view beside Prometheus.

Nothing in the service reads them (not /health, not /metrics): the edge tests do, to see
what a request did inside the limiter and the block log. Where an event has a Prometheus
counter (manas360.metrics) it is incremented at the same place.
"""

from __future__ import annotations

from collections import Counter

edge_stats: Counter[str] = Counter()
"""Event name -> count in this process:

- `rate_limit_checks`: limiter calls answered by Redis
- `rate_limited`: requests refused with 429
- `rate_limit_fail_open`: checks skipped because Redis failed (the request went through)
- `rate_limit_store_errors`: Redis errors seen by the limiter (each opens the breaker)
- `block_log_rows`: rate_limit_logs rows written (inserted or incremented)
- `block_log_flush_errors`: flushes that PostgreSQL refused (entries kept for the next one)
- `block_log_dropped`: blocked requests not logged because the buffer was full
- `rejected_headers`, `rejected_nul`: requests refused for too many headers / a NUL byte
"""


def count(event: str, n: int = 1) -> None:
    edge_stats[event] += n


def read_edge_stats() -> dict[str, int]:
    """A snapshot of this process's edge counters."""
    return dict(edge_stats)
