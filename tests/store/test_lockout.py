"""The lockout's Redis scripts on both backends: per (account, source) and account-wide
counts, reservations of checks in flight, and a clear that ends every source's lock."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from manas360.store.lockout import (
    ACCOUNT,
    SOURCE,
    Limits,
    clear,
    lock_remaining_ms,
    record_failure,
    release_check,
    reserve_check,
)

LIMITS = Limits(threshold=3, account_threshold=5, window_s=60, lock_s=60)
A, B, C = "192.0.2.1", "198.51.100.7", "2001:db8:1::/64"


def _email() -> str:
    return f"{uuid4().hex}@example.com"


async def _fail(store, email, source, *, known=False, reservation=""):
    return await record_failure(store, email=email, source=source, known=known, limits=LIMITS, reservation=reservation)


async def _reserve(store, email, source, name, *, known=False):
    return await reserve_check(
        store, email=email, source=source, known=known, reservation=name, limits=LIMITS, ttl_s=30
    )


async def test_a_source_locks_at_its_threshold_and_other_sources_stay_open(store):
    email = _email()
    verdicts = [await _fail(store, email, A) for _ in range(3)]
    assert [(v.failures, v.locked_now, v.account_locked_now) for v in verdicts] == [
        (1, False, False),
        (2, False, False),
        (3, True, False),
    ]
    source_ms, account_ms = await lock_remaining_ms(store, email=email, source=A)
    assert 0 < source_ms <= 60_000 and account_ms == 0
    refusal = await _reserve(store, email, A, "late")
    assert refusal is not None and refusal.scope == SOURCE and 0 < refusal.retry_ms <= 60_000
    assert await _reserve(store, email, B, "other") is None
    assert (await _fail(store, email, A)).already_locked  # not counted: hammering extends nothing


@pytest.mark.parametrize(("known", "refused"), [(False, True), (True, False)])
async def test_the_account_wide_ceiling_spares_only_a_known_source(store, known, refused):
    email = _email()
    for source in (A, A, B, B):
        await _fail(store, email, source)
    verdict = await _fail(store, email, C)  # the 5th from anywhere
    assert verdict.account_locked_now and not verdict.locked_now
    assert (await lock_remaining_ms(store, email=email, source=C))[1] > 0
    refusal = await _reserve(store, email, "203.0.113.9", "owner", known=known)
    assert (refusal is not None) is refused
    if refused:
        assert refusal.scope == ACCOUNT


async def test_concurrent_failures_lock_a_source_at_exactly_the_threshold(store):
    email = _email()
    verdicts = await asyncio.gather(*[_fail(store, email, A) for _ in range(30)])
    assert sorted(v.failures for v in verdicts if not v.already_locked) == [1, 2, 3]
    assert sum(v.locked_now for v in verdicts) == 1 and sum(v.already_locked for v in verdicts) == 27
    assert sum(v.account_locked_now for v in verdicts) == 0  # 3 counted, the ceiling is 5


async def test_checks_in_flight_count_per_source_and_per_account(store):
    email = _email()
    assert [await _reserve(store, email, A, f"a{n}") for n in range(3)] == [None] * 3
    assert (await _reserve(store, email, A, "a-over")).scope == SOURCE
    assert [await _reserve(store, email, B, f"b{n}") for n in range(2)] == [None] * 2
    assert (await _reserve(store, email, C, "c-over")).scope == ACCOUNT  # 5 in flight for the account
    await release_check(store, email=email, source=A, reservation="a0")
    assert await _reserve(store, email, C, "c0") is None
    # A worker died holding a1: its reservation lapses by its score, not only by the key's TTL.
    raw = store.redis
    for pending in (store.keys.login_source(email, A) + ":pending", store.keys.login_pending(email)):
        await raw.zadd(pending, {"a1": 1})
    assert await _reserve(store, email, A, "a-again") is None


async def test_a_failure_turns_its_reservation_into_a_counted_failure_in_both_counts(store):
    email = _email()
    raw = store.redis
    assert await _reserve(store, email, A, "mine") is None
    assert (await _fail(store, email, A, reservation="mine")).failures == 1
    stem = store.keys.login_source(email, A)
    assert await raw.zcard(stem + ":pending") == 0 and await raw.zcard(store.keys.login_pending(email)) == 0
    assert await raw.zscore(stem + ":fail", "mine") is not None
    assert await raw.zscore(store.keys.login_failures(email), "mine") is not None


async def test_failures_older_than_the_window_do_not_count(store):
    email = _email()
    raw = store.redis
    for _ in range(2):
        await _fail(store, email, A)
    for key in (store.keys.login_source(email, A) + ":fail", store.keys.login_failures(email)):
        for member, score in await raw.zrange(key, 0, -1, withscores=True):
            await raw.zadd(key, {member: score - 61_000})  # aged past the window instead of waiting
    verdict = await _fail(store, email, A)
    assert (verdict.failures, verdict.locked_now) == (1, False)


async def test_a_clear_ends_every_sources_lock_and_count_and_later_failures_count_again(store):
    email = _email()
    for source in (A, A, A, B, B):  # A locked; the account locked (5)
        await _fail(store, email, source)
    assert (await lock_remaining_ms(store, email=email, source=A)) > (0, 0)
    await clear(store, email=email, limits=LIMITS)
    for source in (A, B, C):
        assert await lock_remaining_ms(store, email=email, source=source) == (0, 0)
        assert await _reserve(store, email, source, f"after-{source}") is None
        await release_check(store, email=email, source=source, reservation=f"after-{source}")
    # Counting starts from zero, in the same millisecond as the clear or later.
    verdicts = [await _fail(store, email, B) for _ in range(3)]
    assert [v.failures for v in verdicts] == [1, 2, 3] and verdicts[-1].locked_now
