"""Placing test keys on a chosen cluster node, for the suites that run on both backends."""

from __future__ import annotations

from uuid import uuid4

from manas360.store.client import Store


async def node_of(store: Store, key: str) -> str:
    """The name of the primary that owns `key` ("single" on a single node)."""
    if not store.cluster:
        return "single"
    await store.redis.initialize()  # no-op once the slot map is known
    return store.redis.get_node_from_key(key).name


async def user_ids_on_every_node(store: Store, *, per_node: int = 1) -> list[str]:
    """Fresh user ids whose keys (hash tag `{u:<id>}`) land `per_node` on each primary."""
    wanted = 1
    if store.cluster:
        await store.redis.initialize()
        wanted = len(store.redis.get_primaries())
    found: dict[str, list[str]] = {}
    while len(found) < wanted or any(len(ids) < per_node for ids in found.values()):
        user_id = str(uuid4())
        ids = found.setdefault(await node_of(store, store.keys.user_context(user_id)), [])
        if len(ids) < per_node:
            ids.append(user_id)
    return [user_id for ids in found.values() for user_id in ids]
