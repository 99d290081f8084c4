"""The Redis side of revocations, script by script (the lockout's: tests/store/test_lockout.py)."""

from __future__ import annotations

import uuid

from manas360.store.entitlements import UserContext, UserFill, check_request, store_user_states
from manas360.store.revocations import Revocations, record_revocations

CONTEXT = UserContext(role="user", plan="free", plan_end_ms=0, status="active")


async def fill_revocations(store, *, user_id: str, revocations: Revocations, loaded_ttl_ms: int) -> None:
    """A complete copy written back as a cache miss does (context and revocations)."""
    await store_user_states(
        store, states=[UserFill(user_id, CONTEXT, revocations)], context_ttl_s=60, loaded_ttl_ms=loaded_ttl_ms
    )


def _ids():
    return str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


async def check_access(store, *, user_id: str, session_id: str, jti: str, issued_ms: int):
    """The revocation part of the per-request script (store/request.lua)."""
    check, _ = await check_request(
        store,
        user_id=user_id,
        session_id=session_id,
        jti=jti,
        issued_ms=issued_ms,
        api_limit=1_000_000,
        api_window_s=60,
    )
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
    await fill_revocations(
        store, user_id=user, revocations=Revocations(epoch_ms=5_000, epoch_ttl_ms=60_000), loaded_ttl_ms=60_000
    )
    verdicts = [
        (await check_access(store, user_id=user, session_id=session, jti=jti, issued_ms=ms)).revoked
        for ms in (4_999, 5_000, 5_001)
    ]
    assert verdicts == [True, True, False]


async def test_the_epoch_never_moves_back(app, redis_raw):
    user, _, _ = _ids()
    store = app.ctx.deps.store
    await record_revocations(store, user_id=user, revocations=Revocations(epoch_ms=2_000, epoch_ttl_ms=60_000))
    # A cold-cache load that read PostgreSQL before the newer revocation must not lower it.
    await fill_revocations(
        store, user_id=user, revocations=Revocations(epoch_ms=1_000, epoch_ttl_ms=60_000), loaded_ttl_ms=60_000
    )
    assert await redis_raw.get(store.keys.user_epoch(user)) == "2000"
    assert await redis_raw.exists(store.keys.revocations_loaded(user)) == 1


async def test_recording_a_revocation_does_not_claim_the_cache_is_complete(app, redis_raw):
    user, session, jti = _ids()
    store = app.ctx.deps.store
    await record_revocations(store, user_id=user, revocations=Revocations(jtis={jti: 60_000}))
    assert await redis_raw.exists(store.keys.revocations_loaded(user)) == 0
    assert 0 < await redis_raw.pttl(store.keys.revoked_jti(user, jti)) <= 60_000
