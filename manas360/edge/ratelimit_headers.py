"""RateLimit response headers from limiter verdicts.

Field syntax follows draft-ietf-httpapi-ratelimit-headers-11: `RateLimit-Policy` and
`RateLimit` are Structured Field Lists (RFC 9651) of String items with parameters
(`q`, `w` / `r`, `t`), one item per policy that applied to the request.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from manas360.store.ratelimit import Verdict


def format_headers(verdicts: list[Verdict]) -> dict[str, str]:
    """`RateLimit-Policy` and `RateLimit` for every verdict, plus `Retry-After` on a denial."""
    if not verdicts:
        return {}
    # List comprehensions, not generators: this runs on every limited response.
    headers = {
        "RateLimit-Policy": _policy_header(tuple([(v.policy, v.limit, v.window_s) for v in verdicts])),
        "RateLimit": ", ".join([f"{_sf_string(v.policy)};r={v.remaining};t={v.reset_s}" for v in verdicts]),
    }
    retry_after = retry_after_s(verdicts)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return headers


def retry_after_s(verdicts: list[Verdict]) -> int | None:
    """Seconds until every denying policy admits again; None when none denies."""
    waits = [v.reset_s for v in verdicts if not v.allowed]
    return max(waits) if waits else None


@lru_cache(maxsize=256)  # one value per set of policies a route is under: a handful
def _policy_header(policies: tuple[tuple[str, int, int], ...]) -> str:
    return _sf_list(f"{_sf_string(name)};q={limit};w={window_s}" for name, limit, window_s in policies)


def _sf_list(items: Iterable[str]) -> str:
    # RFC 9651 section 4.1.1 serialises list members separated by ", ".
    return ", ".join(items)


@lru_cache(maxsize=256)  # policy names: a handful
def _sf_string(value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"policy name {value!r} is not printable ASCII")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
