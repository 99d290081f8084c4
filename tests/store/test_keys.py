"""Key names: one slot per user, login identity and client address; users spread over the
cluster; every key under the prefix, so a prefix scan finds (and removes) them all."""

from __future__ import annotations

from uuid import uuid4

from redis.crc import key_slot

from manas360.store.keys import Keys
from tests.fixtures.environment import delete_prefixed_keys
from tests.store.helpers import user_ids_on_every_node


def _slots(*keys: str) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


def test_a_users_keys_share_one_slot_and_users_spread_over_slots():
    keys = Keys("m360:")
    per_user = [
        _slots(
            keys.user_context(u),
            keys.user_epoch(u),
            keys.revoked_jti(u, "j"),
            keys.revoked_session(u, "s"),
            keys.revocations_loaded(u),
            keys.user_rate(u, "api"),
        )
        for u in (str(uuid4()) for _ in range(50))
    ]
    assert all(len(slots) == 1 for slots in per_user)
    assert len(set().union(*per_user)) > 40


def test_login_and_address_keys_each_share_one_slot():
    keys = Keys("m360:")
    assert (
        len(
            _slots(
                keys.login_failures("a@example.com"),
                keys.login_lock("a@example.com"),
                keys.login_pending("a@example.com"),
            )
        )
        == 1
    )
    assert len(_slots(keys.ip_rate("192.0.2.1", "global"), keys.ip_rate("192.0.2.1", "auth", "POST/login"))) == 1


async def test_a_prefix_scan_removes_the_keys_on_every_node(store):
    prefix = f"{store.keys.prefix}cleanup-{uuid4().hex[:6]}:"
    keys = Keys(prefix)
    users = await user_ids_on_every_node(store, per_node=20)
    for user in users:
        await store.redis.set(keys.user_context(user), "x", ex=60)
    assert await delete_prefixed_keys(store.redis, prefix) == len(users)
    assert [key async for key in store.redis.scan_iter(match=f"{prefix}*")] == []
