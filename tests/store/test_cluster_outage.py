"""Cluster outages at the store level, on a cluster of this module's own (nodes get killed):
every failure is a StoreUnavailable (503 upstream), fast, and touches only what it must."""

from __future__ import annotations

import signal
import time

import pytest

from manas360.store.client import StoreUnavailable, close_store, open_store, ping
from manas360.store.entitlements import check_request
from tests.fixtures.redis_cluster import start_redis_cluster
from tests.store.helpers import node_of, user_ids_on_every_node


@pytest.fixture(scope="module")
def doomed_cluster():
    with start_redis_cluster() as cluster:
        yield cluster


@pytest.fixture
async def doomed_store(doomed_cluster):
    # Timeouts far above the bound below: a failure that waited for one (or retried into
    # one) is told apart from a refused connection without a tight, load-sensitive deadline.
    handle = open_store(url=doomed_cluster.url, prefix="test-outage:", socket_timeout_s=30, connect_timeout_s=30)
    yield handle
    await close_store(handle)


def _kill(cluster, node_name: str) -> None:
    process = cluster.processes[cluster.ports.index(int(node_name.rsplit(":", 1)[1]))]
    process.send_signal(signal.SIGKILL)
    process.wait(5)


async def _check(store, user_id: str):
    started = time.monotonic()
    try:
        return await check_request(
            store, user_id=user_id, session_id="s", jti="j", issued_ms=1, api_limit=100, api_window_s=60
        )
    finally:
        assert time.monotonic() - started < 10  # fails fast: no timeout waited, no retry storm


async def test_a_dead_primary_fails_only_its_users_until_it_holds_the_version(doomed_cluster, doomed_store):
    store = doomed_store
    version_node = await node_of(store, store.keys.catalog_version())
    users = {await node_of(store, store.keys.user_context(user)): user for user in await user_ids_on_every_node(store)}
    victim_node = next(node for node in users if node != version_node)
    _kill(doomed_cluster, victim_node)
    with pytest.raises(StoreUnavailable):
        await _check(store, users[victim_node])
    for node, user in users.items():
        if node != victim_node:
            await _check(store, user)  # the other primaries keep serving their users
    with pytest.raises(StoreUnavailable):
        await ping(store)  # readiness: every primary must answer
    # The reference version is one key, on one primary: without it no request is checked
    # (docs/cluster.md: give every primary a replica).
    _kill(doomed_cluster, version_node)
    survivor = next(user for node, user in users.items() if node not in (victim_node, version_node))
    with pytest.raises(StoreUnavailable):
        await _check(store, survivor)


async def test_a_cluster_with_no_reachable_node_is_a_store_outage():
    store = open_store(url="redis+cluster://127.0.0.1:1,127.0.0.1:2", prefix="test-outage:")
    try:
        with pytest.raises(StoreUnavailable):  # redis-py's RedisClusterException is no RedisError
            await _check(store, "someone")
        with pytest.raises(StoreUnavailable):
            await ping(store)
    finally:
        await close_store(store)
