"""store/cluster.py: the cluster client under a burst of concurrent requests (cluster only)."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import pytest

from manas360.store.client import StoreUnavailable, close_store, open_store, ping, pool_stats
from manas360.store.cluster import POOL_HEADROOM
from manas360.store.entitlements import check_request


@pytest.fixture
async def open_cluster_store(redis_cluster):
    handles = []

    def opener(**options):
        handles.append(open_store(url=redis_cluster.url, prefix=f"test-{uuid4().hex[:8]}:", **options))
        return handles[-1]

    yield opener
    for handle in handles:
        await close_store(handle)


async def _burst(store, requests: int) -> list:
    return await asyncio.gather(
        *(
            check_request(
                store, user_id=str(uuid4()), session_id="s", jti="j", issued_ms=1, api_limit=10, api_window_s=60
            )
            for _ in range(requests)
        ),
        return_exceptions=True,
    )


def _moved_replies(redis_cluster) -> int:
    total = 0
    for port in redis_cluster.ports:
        for line in redis_cluster.cli(port, "INFO", "errorstats").splitlines():
            if line.startswith("errorstat_MOVED:"):
                total += int(line.split("count=")[1].split(",")[0])
    return total


async def test_a_burst_on_a_fresh_client_is_routed_by_the_slot_map(redis_cluster, open_cluster_store):
    # Unfixed, commands issued before the map is loaded go to random nodes: MOVED replies,
    # topology reloads, connections closed under other commands.
    moved_before = _moved_replies(redis_cluster)
    results = await _burst(open_cluster_store(), 300)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert _moved_replies(redis_cluster) == moved_before


async def test_more_concurrent_requests_than_connections_queue_instead_of_failing(open_cluster_store):
    store = open_cluster_store(max_connections=4)
    results = await _burst(store, 200)
    assert [r for r in results if isinstance(r, BaseException)] == []
    stats = pool_stats(store)
    assert stats["in_use"] + stats["idle"] <= stats["nodes"] * (4 + POOL_HEADROOM) and stats["waiting"] == 0


async def test_a_command_queued_past_the_socket_timeout_is_a_store_outage(open_cluster_store):
    store = open_cluster_store(max_connections=1, socket_timeout_s=0.2)
    await ping(store)
    release = asyncio.Event()
    holder = asyncio.create_task(store.redis.within_permit(release.wait))
    while not store.redis._permits.locked():  # the holder has the one permit
        await asyncio.sleep(0.001)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await ping(store)
    # It waited its queue timeout (not less), and gave up while the permit was still held.
    assert time.monotonic() - started >= 0.15 and not holder.done()
    release.set()
    await holder
    assert await ping(store)
