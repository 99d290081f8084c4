"""The cached user context and the bulk warm-up, on both backends."""

from __future__ import annotations

from uuid import uuid4

from manas360.store.entitlements import (
    UserContext,
    UserFill,
    check_request,
    forget_user_context,
    read_generations,
    store_user_states,
)
from manas360.store.revocations import Revocations
from tests.store.helpers import node_of, user_ids_on_every_node

CONTEXT = UserContext(role="subscriber", plan="premium", plan_end_ms=1_900_000_000_000, status="active")


async def _check(store, user_id: str, *, jti: str = "j", session_id: str = "s", issued_ms: int = 10_000):
    check, _ = await check_request(
        store, user_id=user_id, session_id=session_id, jti=jti, issued_ms=issued_ms, api_limit=100, api_window_s=60
    )
    return check


async def test_a_stored_context_is_read_back_by_the_per_request_check_until_forgotten(store):
    user = str(uuid4())
    await store_user_states(
        store, states=[UserFill(user, CONTEXT, Revocations())], context_ttl_s=60, loaded_ttl_ms=60_000
    )
    assert 0 < await store.redis.ttl(store.keys.user_context(user)) <= 60
    assert (await _check(store, user)).context == CONTEXT
    await forget_user_context(store, user_id=user)
    assert (await _check(store, user)).context is None


async def test_warming_writes_every_users_context_and_revocations_on_every_node(store):
    users = await user_ids_on_every_node(store, per_node=4)
    revoked = {
        user: Revocations(jtis={"old": 60_000}, sessions={"gone": 60_000}, epoch_ms=5_000, epoch_ttl_ms=60_000)
        for user in users[::2]
    }
    states = [UserFill(user, CONTEXT, revoked.get(user, Revocations())) for user in users]
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


async def test_a_fill_that_read_before_an_invalidation_never_lands_after_it(store):
    """The demotion race: a fill read PostgreSQL (old role) before the change committed; the
    change then dropped the entry; the fill's late write must be refused, not cached."""
    user = str(uuid4())
    seen = (await read_generations(store, user_ids=[user]))[user]  # the fill reads this first...
    await forget_user_context(store, user_id=user)  # ...then the admin's change commits and invalidates
    stale = UserContext(role="admin", plan="free", plan_end_ms=0, status="active")
    await store_user_states(
        store, states=[UserFill(user, stale, Revocations(), seen)], context_ttl_s=60, loaded_ttl_ms=60_000
    )
    check = await _check(store, user)
    assert check.context is None and check.generation != seen
    # A fill that starts after the invalidation (it reads the new generation) lands.
    fresh = UserContext(role="user", plan="free", plan_end_ms=0, status="active")
    await store_user_states(
        store, states=[UserFill(user, fresh, Revocations(), check.generation)], context_ttl_s=60, loaded_ttl_ms=60_000
    )
    assert (await _check(store, user)).context == fresh


async def test_generations_are_read_for_a_batch_across_nodes(store):
    users = await user_ids_on_every_node(store, per_node=2)
    await forget_user_context(store, user_id=users[0])
    generations = await read_generations(store, user_ids=users)
    assert generations[users[0]] == "1" and all(generations[u] == "0" for u in users[1:])
    assert 0 < await store.redis.ttl(store.keys.user_generation(users[0])) <= 86_400


async def test_a_fill_after_redis_forgot_its_scripts_loads_them_and_lands(store):
    """Scripts are not loaded before every fill (a round trip per cache miss); a Redis that
    lost them (restart, SCRIPT FLUSH) answers NOSCRIPT, and the fill loads them and lands."""
    user = str(uuid4())
    revoked = Revocations(jtis={"old": 60_000}, epoch_ms=5_000, epoch_ttl_ms=60_000)
    await store.redis.script_flush()
    await store_user_states(store, states=[UserFill(user, CONTEXT, revoked)], context_ttl_s=60, loaded_ttl_ms=60_000)
    check = await _check(store, user)
    assert (check.loaded, check.context) == (True, CONTEXT)
    assert (await _check(store, user, jti="old")).revoked


async def test_the_packed_per_request_command_survives_redis_forgetting_its_scripts(store):
    """The single node's per-request EVALSHA is packed once per token and client and sent
    again as bytes; after SCRIPT FLUSH it falls back to EVAL and the next one finds it."""
    user = str(uuid4())
    await store_user_states(
        store, states=[UserFill(user, CONTEXT, Revocations())], context_ttl_s=60, loaded_ttl_ms=60_000
    )
    before = await _check(store, user)
    await store.redis.script_flush()
    for expected_remaining in (before.remaining - 1, before.remaining - 2):
        check = await _check(store, user)
        assert (check.context, check.remaining) == (CONTEXT, expected_remaining)


async def test_packed_commands_are_per_token_and_bounded(store, monkeypatch):
    import manas360.store.client as client

    monkeypatch.setattr(client, "PREPARED_COMMANDS", 3)
    store.prepared.clear()
    user = str(uuid4())
    await store_user_states(
        store,
        states=[UserFill(user, CONTEXT, Revocations(jtis={"j2": 60_000}))],
        context_ttl_s=60,
        loaded_ttl_ms=60_000,
    )
    verdicts = [(await _check(store, user, jti=jti)).revoked for jti in ("j1", "j2", "j3", "j4", "j2", "j1")]
    assert verdicts == [False, True, False, False, True, False]  # each token its own keys
    assert len(store.prepared) <= 3 or store.cluster
