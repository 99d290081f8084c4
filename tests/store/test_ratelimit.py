"""The sliding-window limiter against real Redis (single node and cluster), and the headers built
from its verdicts."""

from __future__ import annotations

import asyncio
import math
import random
import sys
from uuid import uuid4

import pytest

from manas360.edge.ratelimit_headers import format_headers
from manas360.store.client import script_core
from manas360.store.ratelimit import Verdict, hit, verdict_from_reply

HOUR = 3600


def _key(store) -> str:
    return store.keys.ip_rate(f"t-{uuid4().hex}", "global")


async def _server_ms(store) -> int:
    seconds, micros = await store.redis.time()
    return seconds * 1000 + micros // 1000


async def _sleep_until_offset(store, *, window_ms: int, offset_ms: int) -> None:
    """Sleep until Redis time next reaches `offset_ms` into a window."""
    now = await _server_ms(store)
    await asyncio.sleep(((offset_ms - now % window_ms) % window_ms) / 1000)


def _left_s(now_ms: int, window_s: int, extra_ms: int = 0) -> int:
    window_ms = window_s * 1000
    return math.ceil((window_ms - now_ms % window_ms + extra_ms) / 1000)


def _wait_s(now_ms: int, window_s: int, extra_ms: int) -> int:
    """Seconds until a full current window admits again: it decays after the window ends,
    but every request leaves the sliding window at the latest one window from now."""
    return min(_left_s(now_ms, window_s, extra_ms), window_s)


async def _state(store, key: str) -> dict[str, int]:
    """The limiter's stored state (five packed numbers, see store/ratelimit.lua)."""
    values = await store.redis.eval("return {struct.unpack('<ddddd', redis.call('GET', KEYS[1]))}", 1, key)
    return dict(zip(("w", "c", "p", "l", "pl"), values[:5], strict=True))


async def _hits(store, *, key: str, limit: int, window_s: int, n: int, cost: int = 1) -> list[Verdict]:
    return [await hit(store, policy="global", key=key, limit=limit, window_s=window_s, cost=cost) for _ in range(n)]


# exactness --------------------------------------------------------------------------------


async def test_limit_admits_exactly_n_then_denies(store):
    verdicts = await _hits(store, key=_key(store), limit=5, window_s=HOUR, n=8)
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 3


async def test_remaining_counts_down_to_zero(store):
    verdicts = await _hits(store, key=_key(store), limit=4, window_s=HOUR, n=6)
    assert [v.remaining for v in verdicts] == [3, 2, 1, 0, 0, 0]
    assert all(v.limit == 4 and v.window_s == HOUR and v.policy == "global" for v in verdicts)


async def test_cost_consumes_several_units(store):
    key = _key(store)
    heavy = await _hits(store, key=key, limit=10, window_s=HOUR, n=4, cost=3)
    assert [(v.allowed, v.remaining) for v in heavy] == [(True, 7), (True, 4), (True, 1), (False, 1)]
    light = await hit(store, policy="global", key=key, limit=10, window_s=HOUR)
    assert (light.allowed, light.remaining) == (True, 0)


@pytest.mark.parametrize("cost, limit, window_s", [(0, 5, 60), (6, 5, 60), (1, 0, 60), (1, 5, 0)])
async def test_impossible_policy_is_refused(store, cost, limit, window_s):
    with pytest.raises(ValueError):
        await hit(store, policy="global", key=_key(store), limit=limit, window_s=window_s, cost=cost)


# denials ----------------------------------------------------------------------------------


async def test_denied_check_does_not_count(store):
    key = _key(store)
    await _hits(store, key=key, limit=3, window_s=HOUR, n=3)
    denials = await _hits(store, key=key, limit=3, window_s=HOUR, n=20)
    assert not any(v.allowed for v in denials)
    assert (await _state(store, key))["c"] == 3
    assert denials[-1].reset_s <= denials[0].reset_s


async def test_blocked_client_hammering_is_admitted_after_retry_after(store):
    key = _key(store)
    if await _server_ms(store) % 1000 > 800:  # fill and denial must fall in one 1 s window
        await _sleep_until_offset(store, window_ms=1000, offset_ms=50)
    await _hits(store, key=key, limit=2, window_s=1, n=2)
    denied = await hit(store, policy="global", key=key, limit=2, window_s=1)
    denied_at = await _server_ms(store)
    assert not denied.allowed and denied.reset_s >= 1
    # Admission is >= 500 ms away (the full previous window must decay by half): hammer before.
    for _ in range(10):
        assert not (await hit(store, policy="global", key=key, limit=2, window_s=1)).allowed
        await asyncio.sleep(0.02)
    now = await _server_ms(store)
    await asyncio.sleep(max(0, denied_at + denied.reset_s * 1000 - now) / 1000)
    assert (await hit(store, policy="global", key=key, limit=2, window_s=1)).allowed


async def test_denial_reset_is_seconds_until_admission(store):
    key = _key(store)
    before = await _server_ms(store)
    await _hits(store, key=key, limit=10, window_s=HOUR, n=10)
    denied = await hit(store, policy="global", key=key, limit=10, window_s=HOUR)
    after = await _server_ms(store)
    # A full current window admits again once, next window, it has decayed by one unit (W / 10).
    tenth_ms = HOUR * 1000 // 10
    assert _wait_s(after, HOUR, tenth_ms) <= denied.reset_s <= _wait_s(before, HOUR, tenth_ms)


async def test_allowed_reset_is_seconds_until_window_end(store):
    before = await _server_ms(store)
    allowed = await hit(store, policy="global", key=_key(store), limit=10, window_s=HOUR)
    after = await _server_ms(store)
    assert _left_s(after, HOUR) <= allowed.reset_s <= _left_s(before, HOUR)


async def test_admission_of_last_unit_reports_time_until_next_admission(store):
    before = await _server_ms(store)
    verdicts = await _hits(store, key=_key(store), limit=2, window_s=HOUR, n=2)
    after = await _server_ms(store)
    half_ms = HOUR * 1000 // 2
    assert verdicts[-1].allowed and verdicts[-1].remaining == 0
    assert _wait_s(after, HOUR, half_ms) <= verdicts[-1].reset_s <= _wait_s(before, HOUR, half_ms)


# concurrency ------------------------------------------------------------------------------


async def test_concurrent_hits_admit_exactly_the_limit(store):
    key = _key(store)
    verdicts = await asyncio.gather(
        *(hit(store, policy="global", key=key, limit=50, window_s=HOUR) for _ in range(200))
    )
    assert sum(v.allowed for v in verdicts) == 50


_WORKER = """
import asyncio, sys
from manas360.store.client import close_store, open_store
from manas360.store.ratelimit import hit

async def main(url, prefix, key, start_ms, n):
    store = open_store(url=url, prefix=prefix)
    seconds, micros = await store.redis.time()
    await asyncio.sleep(max(0, start_ms - (seconds * 1000 + micros // 1000)) / 1000)
    verdicts = await asyncio.gather(
        *(hit(store, policy="global", key=key, limit=100, window_s=3600) for _ in range(n))
    )
    await close_store(store)
    print(sum(v.allowed for v in verdicts))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
"""


async def test_two_processes_share_one_limit(store, store_url):
    key = _key(store)
    start_ms = await _server_ms(store) + 1500  # both processes start hitting at the same moment
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            store_url,
            store.keys.prefix,
            key,
            str(start_ms),
            "150",
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(worker.communicate() for worker in workers))
    assert all(worker.returncode == 0 for worker in workers)
    assert sum(int(out.decode()) for out, _ in outputs) == 100


# sliding behaviour ------------------------------------------------------------------------


async def test_window_edge_admits_no_second_burst(store):
    key, limit, window_s, window_ms = _key(store), 20, 2, 2000
    if not 1000 <= await _server_ms(store) % window_ms < 1700:
        await _sleep_until_offset(store, window_ms=window_ms, offset_ms=1000)
    filled_at = await _server_ms(store)
    filled = await _hits(store, key=key, limit=limit, window_s=window_s, n=limit + 1)
    assert [v.allowed for v in filled] == [True] * limit + [False]

    await _sleep_until_offset(store, window_ms=window_ms, offset_ms=50)
    edge_burst = await _hits(store, key=key, limit=limit, window_s=window_s, n=limit)
    edge_end = await _server_ms(store)
    assert edge_end // window_ms == filled_at // window_ms + 1
    # Right after the edge only the decayed share of the previous window is free again.
    assert sum(v.allowed for v in edge_burst) <= limit * (edge_end % window_ms) // window_ms

    # Mid-window, but before the fill is a whole window old (then it stops counting at all).
    await _sleep_until_offset(store, window_ms=window_ms, offset_ms=900)
    mid_start = await _server_ms(store)
    mid_burst = await _hits(store, key=key, limit=limit, window_s=window_s, n=limit)
    mid_end = await _server_ms(store)
    assert mid_end < filled_at + window_ms
    admitted = sum(v.allowed for v in edge_burst + mid_burst)
    low = limit * (mid_start % window_ms) // window_ms
    assert low <= admitted <= limit * (mid_end % window_ms) // window_ms
    # The documented bound for any span D <= window: limit * (1 + D / window).
    assert limit + admitted <= limit * (1 + (mid_end - filled_at) / window_ms)


async def test_key_expires_after_two_windows(store):
    key = _key(store)
    await hit(store, policy="global", key=key, limit=5, window_s=7)
    assert 0 < await store.redis.pttl(key) <= 14_000


# t never above the window (driven by the core's now_ms) -------------------------------

_AT = (
    script_core("ratelimit")
    + """
return ratelimit_hit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
"""
)
# The same check on a scratch copy of the state: what a request then would get, without it counting.
_PROBE = (
    script_core("ratelimit")
    + """
local state = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[2])
if state then redis.call('SET', KEYS[2], state) end
local reply = ratelimit_hit(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
redis.call('DEL', KEYS[2])
return reply
"""
)
_EPOCH_MS = 29_400_000 * 60_000  # a window edge for every window length used below


def _tagged_keys(store) -> tuple[str, str]:
    tag = uuid4().hex  # one hash tag: the probe's two keys must share a cluster slot
    return store.keys.ip_rate(tag, "global"), store.keys.ip_rate(tag, "probe")


async def _at(store, key: str, now_ms: int, *, limit: int, window_s: int, cost: int = 1) -> Verdict:
    reply = await store.redis.eval(_AT, 1, key, now_ms, limit, window_s * 1000, cost)
    return verdict_from_reply(policy="global", limit=limit, window_s=window_s, reply=reply)


async def _probe(store, keys: tuple[str, str], now_ms: int, *, limit: int, window_s: int, cost: int) -> Verdict:
    reply = await store.redis.eval(_PROBE, 2, *keys, now_ms, limit, window_s * 1000, cost)
    return verdict_from_reply(policy="global", limit=limit, window_s=window_s, reply=reply)


async def test_quota_spent_early_in_a_window_waits_at_most_the_window(store):
    """The review's case: 5/60 s spent in a window's first second; the denial said t=71."""
    keys = _tagged_keys(store)
    for offset_ms in (0, 200, 400, 600, 800):
        assert (await _at(store, keys[0], _EPOCH_MS + offset_ms, limit=5, window_s=60)).allowed
    denied_at = _EPOCH_MS + 1000
    denied = await _at(store, keys[0], denied_at, limit=5, window_s=60)
    assert not denied.allowed and denied.reset_s <= 60
    # Exact: one second earlier is still refused, t seconds later is admitted.
    early = await _probe(store, keys, denied_at + (denied.reset_s - 1) * 1000, limit=5, window_s=60, cost=1)
    assert not early.allowed
    assert (await _at(store, keys[0], denied_at + denied.reset_s * 1000, limit=5, window_s=60)).allowed


async def test_random_traces_t_is_within_the_window_and_admits(store):
    """Over random traffic: t <= w on every reply, and once the quota is spent a request t
    seconds later is admitted while one a second earlier is not."""
    rng = random.Random(360)
    for _ in range(60):
        limit, window_s = rng.randint(1, 8), rng.choice((1, 2, 5, 60))
        window_ms = window_s * 1000
        keys, now_ms = _tagged_keys(store), _EPOCH_MS + rng.randrange(window_ms)
        admitted: list[int] = []
        for _ in range(25):
            now_ms += rng.choice((0, rng.randrange(window_ms // 10 + 1), rng.randrange(2 * window_ms)))
            cost = rng.randint(1, limit)
            verdict = await _at(store, keys[0], now_ms, limit=limit, window_s=window_s, cost=cost)
            assert 1 <= verdict.reset_s <= window_s, (limit, window_s, now_ms, verdict)
            if verdict.allowed:
                admitted += [now_ms] * cost
            # Never more than 2 * limit - 1 in any true sliding window (the documented bound).
            assert sum(1 for at in admitted if at > now_ms - window_ms) <= 2 * limit - 1
            if verdict.remaining >= cost:
                continue
            later = await _probe(
                store, keys, now_ms + verdict.reset_s * 1000, limit=limit, window_s=window_s, cost=cost
            )
            assert later.allowed, (limit, window_s, now_ms, cost, verdict)
            if verdict.reset_s > 1:
                sooner = await _probe(
                    store, keys, now_ms + (verdict.reset_s - 1) * 1000, limit=limit, window_s=window_s, cost=cost
                )
                assert not sooner.allowed, (limit, window_s, now_ms, cost, verdict)


async def test_a_key_written_before_last_times_were_kept_is_never_looser(store):
    """Keys live on through a deploy: without l/pl the times are assumed as late as possible."""
    keys, window_ms = _tagged_keys(store), 60_000
    index = _EPOCH_MS // window_ms
    await store.redis.hset(keys[0], mapping={"w": index - 1, "c": 5, "p": 0})  # full previous window
    denied = await _at(store, keys[0], _EPOCH_MS + 1000, limit=5, window_s=60)
    assert not denied.allowed and denied.reset_s <= 60
    assert (await _at(store, keys[0], _EPOCH_MS + 1000 + denied.reset_s * 1000, limit=5, window_s=60)).allowed


async def test_a_key_in_the_older_hash_form_is_honoured_then_replaced(store):
    """Keys written before the packed form (a deploy) keep their counts and their TTL."""
    keys, window_ms = _tagged_keys(store), 60_000
    index, now_ms = _EPOCH_MS // window_ms, _EPOCH_MS + 5_000
    await store.redis.hset(
        keys[0], mapping={"w": index, "c": 4, "p": 0, "l": now_ms - 1_000, "pl": index * window_ms - 1}
    )
    await store.redis.pexpire(keys[0], 100_000)
    admitted = await _at(store, keys[0], now_ms, limit=5, window_s=60)
    assert admitted.allowed and admitted.remaining == 0
    assert await store.redis.type(keys[0]) == "string"
    assert await _state(store, keys[0]) == {"w": index, "c": 5, "p": 0, "l": now_ms, "pl": index * window_ms - 1}
    assert 90_000 < await store.redis.pttl(keys[0]) <= 100_000  # same window: the TTL stands
    assert not (await _at(store, keys[0], now_ms + 1, limit=5, window_s=60)).allowed


async def test_the_window_rolling_over_sets_the_ttl_and_carries_the_count(store):
    keys, window_ms = _tagged_keys(store), 60_000
    index = _EPOCH_MS // window_ms
    for offset in (0, 10, 20):
        await _at(store, keys[0], _EPOCH_MS + offset, limit=5, window_s=60)
    await store.redis.pexpire(keys[0], 500_000)
    await _at(store, keys[0], _EPOCH_MS + window_ms + 1, limit=5, window_s=60)
    assert await _state(store, keys[0]) == {
        "w": index + 1,
        "c": 1,
        "p": 3,
        "l": _EPOCH_MS + window_ms + 1,
        "pl": _EPOCH_MS + 20,
    }
    assert await store.redis.pttl(keys[0]) <= 2 * window_ms


# reuse by a bigger script -----------------------------------------------------------------


async def test_lua_core_runs_inside_another_script(store):
    user = uuid4().hex
    keys = [store.keys.user_rate(user, "api"), store.keys.user_rate(user, "burst")]
    script = (
        script_core("ratelimit")
        + """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return {ratelimit_hit(KEYS[1], now_ms, 1, 3600000, 1), ratelimit_hit(KEYS[2], now_ms, 5, 3600000, 1)}
"""
    )
    await store.redis.eval(script, 2, *keys)
    api, burst = await store.redis.eval(script, 2, *keys)
    assert not verdict_from_reply(policy="api", limit=1, window_s=HOUR, reply=api).allowed
    assert verdict_from_reply(policy="burst", limit=5, window_s=HOUR, reply=burst).remaining == 3


# headers ----------------------------------------------------------------------------------


def _verdict(policy="global", *, allowed=True, limit=100, remaining=37, reset_s=412, window_s=900) -> Verdict:
    return Verdict(policy=policy, allowed=allowed, limit=limit, remaining=remaining, reset_s=reset_s, window_s=window_s)


def test_headers_for_one_policy():
    assert format_headers([_verdict()]) == {
        "RateLimit-Policy": '"global";q=100;w=900',
        "RateLimit": '"global";r=37;t=412',
    }


def test_headers_for_several_policies_are_one_list():
    headers = format_headers([_verdict(), _verdict("api", limit=1000, remaining=999, reset_s=3000, window_s=3600)])
    assert headers == {
        "RateLimit-Policy": '"global";q=100;w=900, "api";q=1000;w=3600',
        "RateLimit": '"global";r=37;t=412, "api";r=999;t=3000',
    }


def test_retry_after_is_t_of_the_denying_policy():
    headers = format_headers([_verdict(), _verdict("auth", allowed=False, limit=5, remaining=0, reset_s=61)])
    assert headers["Retry-After"] == "61"
    assert headers["RateLimit"] == '"global";r=37;t=412, "auth";r=0;t=61'


def test_retry_after_waits_for_every_denying_policy():
    denials = [_verdict("auth", allowed=False, reset_s=61), _verdict("global", allowed=False, reset_s=300)]
    assert format_headers(denials)["Retry-After"] == "300"


def test_no_retry_after_when_all_allow():
    assert "Retry-After" not in format_headers([_verdict()])


def test_policy_name_that_could_break_the_header_is_refused():
    with pytest.raises(ValueError):
        format_headers([_verdict("global\r\nSet-Cookie: x=1")])


async def test_retry_after_of_a_real_denial_equals_its_t(store):
    key = _key(store)
    await _hits(store, key=key, limit=1, window_s=HOUR, n=1)
    denied = await hit(store, policy="auth", key=key, limit=1, window_s=HOUR)
    headers = format_headers([denied])
    assert headers["Retry-After"] == str(denied.reset_s)
    assert headers["RateLimit"] == f'"auth";r=0;t={denied.reset_s}'
    assert headers["RateLimit-Policy"] == f'"auth";q=1;w={HOUR}'
