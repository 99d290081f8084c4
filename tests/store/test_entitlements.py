"""The cached user context and the bulk warm-up, on both backends."""

from __future__ import annotations

from uuid import uuid4

from store.entitlements import UserContext, check_request, forget_user_context, store_user_states
from store.revocations import Revocations
from tests.store.helpers import node_of, user_ids_on_every_node

CONTEXT = UserContext(role="subscriber", plan="premium", plan_end_ms=1_900_000_000_000, status="active")


async def _check(store, user_id: str, *, jti: str = "j", session_id: str = "s", issued_ms: int = 10_000):
    check, _ = await check_request(store, user_id=user_id, session_id=session_id, jti=jti, issued_ms=issued_ms,
                                   api_limit=100, api_window_s=60)
    return check


async def test_a_stored_context_is_read_back_by_the_per_request_check_until_forgotten(store):
    user = str(uuid4())
    await store_user_states(store, states=[(user, CONTEXT, Revocations())], context_ttl_s=60, loaded_ttl_ms=60_000)
    assert 0 < await store.redis.ttl(store.keys.user_context(user)) <= 60
    assert (await _check(store, user)).context == CONTEXT
    await forget_user_context(store, user_id=user)
    assert (await _check(store, user)).context is None


async def test_warming_writes_every_users_context_and_revocations_on_every_node(store):
    users = await user_ids_on_every_node(store, per_node=4)
    revoked = {user: Revocations(jtis={"old": 60_000}, sessions={"gone": 60_000}, epoch_ms=5_000,
                                 epoch_ttl_ms=60_000) for user in users[::2]}
    states = [(user, CONTEXT, revoked.get(user, Revocations())) for user in users]
    await store_user_states(store, states=states, context_ttl_s=60, loaded_ttl_ms=60_000)
    if store.cluster:
        assert len({await node_of(store, store.keys.user_context(user)) for user in users}) == 3
    for user in users:
        check = await _check(store, user)
        assert (check.loaded, check.revoked, check.context) == (True, False, CONTEXT)
        if user in revoked:
            assert (await _check(store, user, jti="old")).revoked
            assert (await _check(store, user, session_id="gone")).revoked
            assert (await _check(store, user, issued_ms=5_000)).revoked
