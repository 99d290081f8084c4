"""The Redis side of revocations and lockout, script by script."""

from __future__ import annotations

import asyncio
import uuid

from manas360.store.entitlements import UserContext, UserFill, check_request, store_user_states
from manas360.store.lockout import lock_remaining_ms, record_failure, release_check, reserve_check
from manas360.store.revocations import Revocations, record_revocations

CONTEXT = UserContext(role="user", plan="free", plan_end_ms=0, status="active")


async def fill_revocations(store, *, user_id: str, revocations: Revocations, loaded_ttl_ms: int) -> None:
    """A complete copy written back as a cache miss does (context and revocations)."""
    await store_user_states(store, states=[UserFill(user_id, CONTEXT, revocations)], context_ttl_s=60,
                            loaded_ttl_ms=loaded_ttl_ms)


def _ids():
    return str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


async def check_access(store, *, user_id: str, session_id: str, jti: str, issued_ms: int):
    """The revocation part of the per-request script (store/request.lua)."""
    check, _ = await check_request(store, user_id=user_id, session_id=session_id, jti=jti, issued_ms=issued_ms,
                                   api_limit=1_000_000, api_window_s=60)
    return check


async def test_a_cold_user_is_not_loaded_and_not_yet_revoked(app):
    user, session, jti = _ids()
    check = await check_access(app.ctx.deps.store, user_id=user, session_id=session, jti=jti, issued_ms=1)
    assert (check.loaded, check.revoked) == (False, False)


async def test_a_denylisted_session_is_revoked_even_before_the_user_is_loaded(app):
    user, session, jti = _ids()
    await record_revocations(app.ctx.deps.store, user_id=user, revocations=Revocations(sessions={session: 60_000}))
    check = await check_access(app.ctx.deps.store, user_id=user, session_id=session, jti=jti, issued_ms=1)
    assert (check.loaded, check.revoked) == (False, True)


async def test_the_epoch_kills_tokens_issued_at_or_before_it_to_the_millisecond(app):
    user, session, jti = _ids()
    store = app.ctx.deps.store
    await fill_revocations(store, user_id=user, revocations=Revocations(epoch_ms=5_000, epoch_ttl_ms=60_000),
                           loaded_ttl_ms=60_000)
    verdicts = [(await check_access(store, user_id=user, session_id=session, jti=jti, issued_ms=ms)).revoked
                for ms in (4_999, 5_000, 5_001)]
    assert verdicts == [True, True, False]


async def test_the_epoch_never_moves_back(app, redis_raw):
    user, _, _ = _ids()
    store = app.ctx.deps.store
    await record_revocations(store, user_id=user, revocations=Revocations(epoch_ms=2_000, epoch_ttl_ms=60_000))
    # A cold-cache load that read PostgreSQL before the newer revocation must not lower it.
    await fill_revocations(store, user_id=user, revocations=Revocations(epoch_ms=1_000, epoch_ttl_ms=60_000),
                           loaded_ttl_ms=60_000)
    assert await redis_raw.get(store.keys.user_epoch(user)) == "2000"
    assert await redis_raw.exists(store.keys.revocations_loaded(user)) == 1


async def test_recording_a_revocation_does_not_claim_the_cache_is_complete(app, redis_raw):
    user, session, jti = _ids()
    store = app.ctx.deps.store
    await record_revocations(store, user_id=user, revocations=Revocations(jtis={jti: 60_000}))
    assert await redis_raw.exists(store.keys.revocations_loaded(user)) == 0
    assert 0 < await redis_raw.pttl(store.keys.revoked_jti(user, jti)) <= 60_000


async def test_concurrent_failures_lock_at_exactly_the_threshold(app):
    email = f"{uuid.uuid4().hex}@example.com"
    verdicts = await asyncio.gather(*[
        record_failure(app.ctx.deps.store, email=email, threshold=5, window_s=900, lock_s=900) for _ in range(30)])
    assert sorted(v.failures for v in verdicts if not v.already_locked) == [1, 2, 3, 4, 5]
    assert sum(v.locked_now for v in verdicts) == 1 and sum(v.already_locked for v in verdicts) == 25
    assert 0 < await lock_remaining_ms(app.ctx.deps.store, email=email) <= 900_000


async def test_failures_older_than_the_window_do_not_count(app, redis_raw):
    email = f"{uuid.uuid4().hex}@example.com"
    store = app.ctx.deps.store
    for _ in range(4):
        await record_failure(store, email=email, threshold=5, window_s=900, lock_s=900)
    # Age the recorded failures past the window instead of waiting 15 minutes.
    key = store.keys.login_failures(email)
    for member, score in await redis_raw.zrange(key, 0, -1, withscores=True):
        await redis_raw.zadd(key, {member: score - 901_000})
    verdict = await record_failure(store, email=email, threshold=5, window_s=900, lock_s=900)
    assert (verdict.failures, verdict.locked_now) == (1, False)


async def test_checks_in_flight_count_toward_the_threshold_and_a_leaked_one_lapses(app, redis_raw):
    email = f"{uuid.uuid4().hex}@example.com"
    store = app.ctx.deps.store
    limits = dict(threshold=5, window_s=900, ttl_s=30, lock_s=900)
    await record_failure(store, email=email, threshold=5, window_s=900, lock_s=900)
    assert [await reserve_check(store, email=email, reservation=f"r{n}", **limits) for n in range(4)] == [0] * 4
    assert await reserve_check(store, email=email, reservation="over", **limits) == 900_000  # 1 + 4 in flight
    pending = store.keys.login_pending(email)
    assert 0 < await redis_raw.pttl(pending) <= 30_000  # a dead worker's reservations go with the key
    await release_check(store, email=email, reservation="r0")
    assert await reserve_check(store, email=email, reservation="again", **limits) == 0
    # A worker died holding r1: its reservation lapses by its score, not only by the key's TTL.
    await redis_raw.zadd(pending, {"r1": 1})
    assert await reserve_check(store, email=email, reservation="after", **limits) == 0


async def test_a_failure_turns_its_reservation_into_a_counted_failure(app, redis_raw):
    email = f"{uuid.uuid4().hex}@example.com"
    store = app.ctx.deps.store
    assert await reserve_check(store, email=email, reservation="mine", threshold=5, window_s=900, ttl_s=30,
                               lock_s=900) == 0
    verdict = await record_failure(store, email=email, threshold=5, window_s=900, lock_s=900, reservation="mine")
    assert verdict.failures == 1
    assert await redis_raw.zcard(store.keys.login_pending(email)) == 0
    assert await redis_raw.zscore(store.keys.login_failures(email), "mine") is not None
