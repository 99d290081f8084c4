"""Login lockout beyond the script (tests/store/test_auth_store.py): the lock's remaining
time, an administrator's unlock and check reservations, on both backends."""

from __future__ import annotations

from uuid import uuid4

from manas360.store.lockout import clear, lock_remaining_ms, record_failure, release_check, reserve_check


async def test_an_unlock_removes_the_lock_and_the_failures(store):
    email = f"{uuid4().hex}@example.com"
    assert await lock_remaining_ms(store, email=email) == 0
    for _ in range(3):
        verdict = await record_failure(store, email=email, threshold=3, window_s=60, lock_s=60)
    assert verdict.locked_now and 0 < await lock_remaining_ms(store, email=email) <= 60_000
    await record_failure(store, email=email, threshold=3, window_s=60, lock_s=60)
    await clear(store, email=email)
    assert await lock_remaining_ms(store, email=email) == 0
    assert await store.redis.exists(store.keys.login_failures(email), store.keys.login_lock(email)) == 0
    verdict = await record_failure(store, email=email, threshold=3, window_s=60, lock_s=60)
    assert (verdict.failures, verdict.locked_now, verdict.already_locked) == (1, False, False)


async def test_reservations_stop_at_the_threshold_and_the_lock_refuses_them(store):
    email = f"{uuid4().hex}@example.com"
    limits = dict(threshold=3, window_s=60, ttl_s=30, lock_s=60)
    assert [await reserve_check(store, email=email, reservation=f"r{n}", **limits) for n in range(4)] == \
        [0, 0, 0, 60_000]
    await release_check(store, email=email, reservation="r0")
    for name in ("r1", "r2"):
        await record_failure(store, email=email, threshold=3, window_s=60, lock_s=60, reservation=name)
    verdict = await record_failure(store, email=email, threshold=3, window_s=60, lock_s=60)
    assert verdict.locked_now
    assert 0 < await reserve_check(store, email=email, reservation="late", **limits) <= 60_000
    await clear(store, email=email)
    assert await store.redis.exists(store.keys.login_pending(email)) == 0
    assert await reserve_check(store, email=email, reservation="fresh", **limits) == 0
