"""The reference-data version and its change channel, on both backends (on a cluster the
version key lives in a slot of its own and PUBLISH reaches subscribers on any node)."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio.cluster import RedisCluster

from manas360.store.catalog import bump_catalog_version, get_catalog_version, listen_catalog_changes
from manas360.store.client import close_store, open_store


async def _subscribers(store) -> int:
    channel = store.keys.catalog_channel()
    # On a cluster, PUBSUB NUMSUB counts one node's subscribers: ask them all.
    where = {"target_nodes": RedisCluster.ALL_NODES} if store.cluster else {}
    return dict(await store.redis.pubsub_numsub(channel, **where)).get(channel, 0)


async def test_a_bump_raises_the_version_and_reaches_a_listener(store):
    received: asyncio.Queue[int] = asyncio.Queue()
    listener = asyncio.create_task(listen_catalog_changes(store, received.put))
    try:
        while not await _subscribers(store):
            await asyncio.sleep(0.01)
        start = await get_catalog_version(store)
        version = await bump_catalog_version(store)
        assert version > start and version == await get_catalog_version(store)
        assert await asyncio.wait_for(received.get(), 2) == version
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def test_a_version_is_never_handed_out_again_after_a_flush(store):
    """A worker holding version v must see a different number after Redis loses the key
    (INCR restarted at 1 and could hand v out again: that worker never reloaded)."""
    first = await bump_catalog_version(store)
    await store.redis.delete(store.keys.catalog_version())  # the prefix's flush
    assert await get_catalog_version(store) == 0
    again = await bump_catalog_version(store)
    assert again > first


async def test_bumps_are_strictly_increasing(store):
    versions = [await bump_catalog_version(store) for _ in range(20)]  # back to back
    versions += await asyncio.gather(*(bump_catalog_version(store) for _ in range(20)))
    assert len(set(versions)) == 40
    assert versions[:20] == sorted(versions[:20]) and min(versions[20:]) > versions[19]


async def test_a_listener_started_before_any_other_command_subscribes_at_once(store, store_url):
    # A worker starts its listener first thing; a failed first subscribe would leave it
    # deaf for the 1 s back-off (on a cluster: the slot map was not loaded yet).
    fresh = open_store(url=store_url, prefix=store.keys.prefix)
    listener = asyncio.create_task(listen_catalog_changes(fresh, lambda version: asyncio.sleep(0)))
    started = time.monotonic()
    try:
        while not await _subscribers(store):
            assert time.monotonic() - started < 0.5, "the listener did not subscribe at its first attempt"
            await asyncio.sleep(0.01)
    finally:
        listener.cancel()
        # A cancelled listener ends promptly (a worker's shutdown waits for it).
        await asyncio.wait_for(asyncio.gather(listener, return_exceptions=True), 10)
        await close_store(fresh)
