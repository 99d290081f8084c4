"""Sliding-window-counter rate limits: one atomic Lua check per request, O(1) memory per key.

Algorithm. Time is cut into fixed windows of `window_s` seconds (W), aligned on Redis server
time (`TIME` inside the script, so every worker and instance agrees). A key is one small
string (five packed numbers, see ratelimit.lua): the current window's index, its count and
the previous window's count, and for each of the two the time of its last admitted request
(`l`, carried to `pl` when the window rolls). A request of `cost` is admitted when

    estimate + cost <= limit,   estimate = prev * (1 - elapsed / window) + curr

where prev counts only while `pl > now - W`: once the previous window's last request is a
whole window old, every one of its requests is outside the true sliding window (now - W,
now], which holds none of them, so the decayed share would be phantom traffic. (The
current window's requests are always younger than W.) Only an admitted request is counted.
The key's TTL is 2 * window, set when it rolls to a new window (after that, neither count
matters).

Denied checks do not count. A blocked client that keeps retrying therefore does not push
its own unblocking further away: it is admitted as soon as its admitted traffic allows.
Hammering while blocked costs Redis one read-only script call, nothing more.

Worst-case error (proved by splitting an interval at the window edge: the part in the
new window admits at most limit - prev * (1 - h / window) while prev still counts, and
at most limit once it has stopped counting, when the old window holds no request of the
interval; the part in the old window admits at most prev):
- each fixed window admits at most `limit`, so the long-run rate never exceeds the policy;
- any interval of D <= window seconds admits at most limit * (1 + D / window): a burst
  straddling an edge gets `limit` plus a pro-rata trickle, never 2 * limit (a fixed-window
  counter admits 2 * limit within milliseconds there);
- over a true sliding window of exactly `window` seconds the count can approach 2 * limit
  (at most 2 * limit - 1): spend the whole quota in the last instant of one window, then
  send a steady stream through the next. The estimate assumes the previous window's
  requests were spread evenly and hands them back linearly; for even traffic it is exact.
Not counting denials, and dropping a count whose requests are all older than W, do not
loosen these bounds: they are bounds on admitted requests, and a dropped count holds no
request of the sliding window ending now.

`reset_s` (the `t` of draft-ietf-httpapi-ratelimit-headers-11, "seconds within which the
client can use no more than the available quota"):
- when `remaining` still covers another request of the same cost: seconds until the current
  window ends, the horizon over which `remaining` is budgeted (the server may admit a
  little more before then, as the previous window decays; never less);
- otherwise (every denial, and the admission that used the last unit): seconds until a
  request of the same cost would be admitted (absent other traffic), at least 1, and
  exact: one second earlier is still refused. A 429's `Retry-After` is this. It is the
  earlier of the time the decaying estimate lets the request in and the time the blocking
  count stops counting (its last request + W), so it is never above W: by max(l, pl) + W
  every counted request is a whole window old and the estimate is 0. (The estimate never
  rises while nothing is admitted, so any later request is admitted too.) Only a server
  clock stepping back could exceed W; the script then answers W rather than promise more.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from manas360.store.client import Store, reply_items

_SCRIPT = "ratelimit"
# Lua numbers are doubles: limit * window in ms must stay an exact integer.
_MAX_LIMIT_WINDOW_MS = 2**53


# A NamedTuple, not a frozen dataclass: built on every gated request (see store/entitlements.py).
class Verdict(NamedTuple):
    policy: str
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    window_s: int


async def hit(store: Store, *, policy: str, key: str, limit: int, window_s: int, cost: int = 1) -> Verdict:
    """Count a request of `cost` under `key` if the policy admits it; say how much is left."""
    check_policy(limit=limit, window_s=window_s, cost=cost)
    reply = await store.run_script(_SCRIPT, keys=[key], args=[limit, window_s, cost])
    return verdict_from_reply(
        policy=policy, limit=limit, window_s=window_s, reply=reply_items(reply, 3, script=_SCRIPT)
    )


def verdict_from_reply(*, policy: str, limit: int, window_s: int, reply: list[Any]) -> Verdict:
    """Build a Verdict from the core's `{allowed, remaining, t}` reply (also for bigger scripts)."""
    allowed, remaining, reset_s = reply
    return Verdict(
        policy=policy,
        allowed=bool(allowed),
        limit=limit,
        remaining=int(remaining),
        reset_s=int(reset_s),
        window_s=window_s,
    )


def check_policy(*, limit: int, window_s: int, cost: int) -> None:
    """Refuse arguments the script cannot honour (raises ValueError)."""
    if limit < 1 or window_s < 1:
        raise ValueError(f"limit and window_s must be positive, not {limit}/{window_s}")
    if not 1 <= cost <= limit:
        raise ValueError(f"cost must be 1..limit ({limit}), not {cost}")
    if limit * window_s * 1000 >= _MAX_LIMIT_WINDOW_MS:
        raise ValueError(f"limit * window_s is too large for exact arithmetic: {limit}/{window_s}")
