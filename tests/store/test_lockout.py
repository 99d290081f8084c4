"""Login lockout beyond the script (tests/store/test_auth_store.py): the lock's remaining
time and an administrator's unlock, on both backends."""

from __future__ import annotations

from uuid import uuid4

from store.lockout import clear, lock_remaining_ms, record_failure


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
