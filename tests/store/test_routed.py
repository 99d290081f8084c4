"""The cluster's fast path (store/routed.py): per-node auto-pipelined connections routed by
slot, redirections during a resharding, NOSCRIPT per node, and a node that dies and returns.

Against real three-master clusters: the session's shared one for what changes nothing, and
one of this module's own for what moves slots, flushes scripts or kills nodes."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from manas360.store.client import StoreUnavailable, close_store, open_store
from manas360.store.entitlements import check_request
from manas360.store.ratelimit import hit
from manas360.store.routed import RoutedPipelinedRedis, command_slot
from tests.fixtures.redis_cluster import (  # noqa: F401  (redis_cluster: a fixture)
    _free_ports,
    _wait,
    redis_cluster,
    start_redis_cluster,
)
from tests.store.helpers import node_of, user_ids_on_every_node


@pytest.fixture(scope="module")
def own_cluster():
    with start_redis_cluster() as cluster:
        yield cluster


@asynccontextmanager
async def cluster_store(cluster, **options):
    handle = open_store(url=cluster.url, prefix=f"test-routed-{uuid4().hex[:6]}:", **options)
    try:
        yield handle
    finally:
        await close_store(handle)


@asynccontextmanager
async def node_client(cluster, port: int):
    """A plain (not cluster-aware) connection to one node: MOVED if that node does not own a key."""
    client = Redis(host="127.0.0.1", port=port, password=cluster.password, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def slot_of_user(store, user_id: str) -> int:
    return key_slot(store.keys.user_context(user_id).encode())


async def check(store, user_id: str):
    return await check_request(
        store, user_id=user_id, session_id="s", jti="j", issued_ms=1, api_limit=1_000, api_window_s=60
    )


def test_the_slot_of_a_command_is_its_key_or_its_scripts_first_key():
    assert command_slot(("GET", "{u:1}:x")) == key_slot(b"u:1")
    assert command_slot(("EVALSHA", "f" * 40, 2, "a{u:7}", "b{u:7}", "argv")) == key_slot(b"u:7")
    assert command_slot(("EVAL", "return 1", 0, "argv")) is None
    assert command_slot(("PING",)) is None


async def test_each_script_runs_on_the_primary_owning_its_slot(redis_cluster):  # noqa: F811
    async with cluster_store(redis_cluster) as store:
        assert isinstance(store.fast, RoutedPipelinedRedis)
        users = await user_ids_on_every_node(store)
        for user in users:
            await check(store, user)
        assert sorted(port for _, port in store.fast.primaries) == sorted(redis_cluster.ports)
        for user in users:
            owner = await node_of(store, store.keys.user_context(user))  # redis-py's own view
            host, port = store.fast.node_for(slot_of_user(store, user))
            assert f"{host}:{port}" == owner
            async with node_client(redis_cluster, port) as node:  # the counter is there, not elsewhere
                assert await node.exists(store.keys.user_rate(user, "api")) == 1
        await store.redis.delete(*(store.keys.user_rate(user, "api") for user in users))


async def test_concurrent_commands_share_one_write_per_node(redis_cluster):  # noqa: F811
    async with cluster_store(redis_cluster) as store:
        fast = store.fast
        keys = [store.keys.user_rate(user, "api") for user in await user_ids_on_every_node(store, per_node=4)]
        await fast.execute_many(*(("DEL", key) for key in keys))  # connects every node
        writes: dict[tuple[str, int], int] = {}
        for address, node in fast._nodes.items():
            transport = node._protocol._transport
            original = transport.write
            transport.write = lambda data, address=address, original=original: (
                writes.__setitem__(address, writes.get(address, 0) + 1),
                original(data),
            )[1]
        replies = await asyncio.gather(*(fast.execute("INCR", key) for key in keys for _ in range(50)))
        assert sorted(replies) == sorted(list(range(1, 51)) * len(keys))  # each caller got its own reply
        assert writes == {address: 1 for address in fast.primaries}  # 600 commands, one write per node
        await fast.execute_many(*(("DEL", key) for key in keys))


async def test_a_script_and_a_get_of_another_node_go_out_in_the_same_tick(redis_cluster):  # noqa: F811
    async with cluster_store(redis_cluster) as store:
        await store.fast.execute("PING")  # loads the map
        version_node = store.fast.node_for(key_slot(store.keys.catalog_version().encode()))
        user = str(uuid4())
        while store.fast.node_for(slot_of_user(store, user)) == version_node:
            user = str(uuid4())
        await store.redis.set(store.keys.catalog_version(), "41")
        _, version = await check(store, user)  # the two replies came from two nodes
        assert version == 41
        await store.redis.delete(store.keys.catalog_version(), store.keys.user_rate(user, "api"))


async def _node_ids(cluster) -> dict[int, str]:
    return {port: cluster.cli(port, "CLUSTER", "MYID").strip() for port in cluster.ports}


async def _begin_migration(cluster, slot: int, source: int, target: int) -> None:
    ids = await _node_ids(cluster)
    async with node_client(cluster, target) as node:
        await node.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    async with node_client(cluster, source) as node:
        await node.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])


async def _finish_migration(cluster, slot: int, source: int, target: int) -> None:
    """Move the slot's remaining keys to `target` and tell every node the slot is its."""
    ids = await _node_ids(cluster)
    async with node_client(cluster, source) as node:
        while keys := await node.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            await node.execute_command(
                "MIGRATE", "127.0.0.1", target, "", 0, 5000, "AUTH", cluster.password, "KEYS", *keys
            )
    for port in (target, source, *(port for port in cluster.ports if port not in (source, target))):
        async with node_client(cluster, port) as node:
            await node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])


async def _until(condition, *, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_resharded_slot_is_followed_through_ask_tryagain_then_moved(own_cluster):
    async with cluster_store(own_cluster, socket_timeout_s=5.0) as store:
        fast = store.fast
        users = await user_ids_on_every_node(store)
        for user in users:
            await check(store, user)  # the map is loaded, every node has seen the scripts
            await hit(store, policy="t", key=store.keys.user_rate(user, "t"), limit=5, window_s=60)
        user = str(uuid4())  # no key of this user exists anywhere yet
        slot = slot_of_user(store, user)
        source = fast.node_for(slot)[1]
        target = next(port for port in own_cluster.ports if port != source)
        await _begin_migration(own_cluster, slot, source, target)
        migrated = False
        try:
            # Migrating, the key not on the source: ASK; the one-key script runs on the
            # importing node after ASKING, and the map does not change.
            verdict = await hit(store, policy="t", key=store.keys.user_rate(user, "t"), limit=5, window_s=60)
            assert verdict.allowed and fast.redirections["ASK"] == 1
            assert fast.node_for(slot) == ("127.0.0.1", source)
            async with node_client(own_cluster, target) as node, node.pipeline(transaction=False) as pipe:
                pipe.execute_command("ASKING")
                pipe.exists(store.keys.user_rate(user, "t"))
                assert (await pipe.execute())[1] == 1
            # The seven-key request script cannot run while the slot's keys are split:
            # TRYAGAIN, re-sent until the migration is over.
            pending = asyncio.create_task(check(store, user))
            await _until(lambda: fast.redirections["TRYAGAIN"] > 0)
            assert not pending.done()
            # Migrated: the source answers MOVED; the command follows it, the slot points at
            # the target at once, and the whole map is reloaded in the background.
            loads = fast.map_loads
            await _finish_migration(own_cluster, slot, source, target)
            migrated = True
            check_1, _ = await pending
            assert check_1.allowed and check_1.remaining == 999
            assert fast.redirections["MOVED"] >= 1 and fast.node_for(slot) == ("127.0.0.1", target)
            await _until(lambda: fast.map_loads > loads)
            assert fast.node_for(slot) == ("127.0.0.1", target)
            moved = fast.redirections["MOVED"]
            check_2, _ = await check(store, user)  # straight to the new owner
            assert check_2.remaining == 998 and fast.redirections["MOVED"] == moved
        finally:
            if migrated:  # and back again, for the next tests
                await _begin_migration(own_cluster, slot, target, source)
                await _finish_migration(own_cluster, slot, target, source)
            else:
                await _abort_migration(own_cluster, slot)
        check_3, _ = await check(store, user)
        if migrated:
            assert check_3.remaining == 997 and fast.node_for(slot) == ("127.0.0.1", source)


async def _abort_migration(cluster, slot: int) -> None:
    for port in cluster.ports:
        async with node_client(cluster, port) as node:
            await node.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")


async def test_a_script_flush_on_one_node_reloads_the_script_there_only(own_cluster):
    async with cluster_store(own_cluster) as store:
        users = await user_ids_on_every_node(store)
        for user in users:
            await check(store, user)
        sha = store.script("request")[1]
        victim = store.fast.node_for(slot_of_user(store, users[0]))[1]
        async with node_client(own_cluster, victim) as node:
            await node.script_flush()
            assert await node.script_exists(sha) == [False]
            verdict, _ = await check(store, users[0])  # NOSCRIPT there, then EVAL there
            assert verdict.remaining == 998
            assert await node.script_exists(sha) == [True]


async def test_a_dead_node_fails_its_users_fast_and_serves_them_again_once_back(own_cluster):
    async with cluster_store(own_cluster, socket_timeout_s=30, connect_timeout_s=30) as store:
        users = await user_ids_on_every_node(store)
        for user in users:
            await check(store, user)
        version_node = store.fast.node_for(key_slot(store.keys.catalog_version().encode()))
        by_node = {store.fast.node_for(slot_of_user(store, user)): user for user in users}
        victim = next(node for node in by_node if node != version_node)
        own_cluster.kill(victim[1])
        try:
            for _ in range(3):  # every attempt fails, fast: connection refused, no retry storm
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await check(store, by_node[victim])
                assert time.monotonic() - started < 10  # refused at once, not a 30 s timeout
            for node, user in by_node.items():
                if node != victim:
                    await check(store, user)  # the other primaries keep serving
        finally:
            await asyncio.to_thread(own_cluster.restart, victim[1])
        # The same client, no restart: the node's connection reopens on the next command;
        # the node came back empty (no persistence), so its counter starts again.
        verdict, _ = await check(store, by_node[victim])
        assert verdict.allowed and verdict.remaining == 999


def _add_replica(cluster, master_port: int) -> int:
    """A fourth node, made a replica of `master_port`'s node and synced with it."""
    port = _free_ports(1)[0]
    cluster.ports.append(port)  # stopped with the others at the end
    cluster.processes.append(cluster.spawn(port))
    deadline = time.monotonic() + 20
    _wait(lambda: cluster.cli(port, "PING").strip() == "PONG", deadline, lambda: cluster.log(port))
    cluster.cli(port, "CLUSTER", "MEET", "127.0.0.1", str(master_port))
    master_id = cluster.cli(master_port, "CLUSTER", "MYID").strip()
    _wait(
        lambda: cluster.cli(port, "CLUSTER", "REPLICATE", master_id).strip() == "OK",
        deadline,
        lambda: cluster.cli(port, "CLUSTER", "NODES"),
    )
    _wait(
        lambda: "master_link_status:up" in cluster.cli(port, "INFO", "replication"),
        deadline,
        lambda: cluster.cli(port, "INFO", "replication"),
    )
    return port


def _promote(cluster, replica_port: int) -> None:
    """A manual failover: the replica takes over its master's slots, the master becomes its replica."""
    deadline = time.monotonic() + 20
    assert cluster.cli(replica_port, "CLUSTER", "FAILOVER").strip() == "OK"
    replica_id = cluster.cli(replica_port, "CLUSTER", "MYID").strip()
    for port in cluster.ports:  # every node knows the new primary (gossip takes a moment)
        _wait(
            lambda port=port: any(
                line.startswith(replica_id) and " master" in line.replace(",master", " master")
                for line in cluster.cli(port, "CLUSTER", "NODES").splitlines()
            ),
            deadline,
            lambda port=port: cluster.cli(port, "CLUSTER", "NODES"),
        )
    cluster.wait_ok()


async def test_after_a_failover_the_new_primary_is_found_by_moved_and_the_map_reload():
    with start_redis_cluster() as cluster:
        async with cluster_store(cluster) as store:
            fast = store.fast
            user = (await user_ids_on_every_node(store))[0]
            await check(store, user)
            slot = slot_of_user(store, user)
            old_primary = fast.node_for(slot)
            replica = await asyncio.to_thread(_add_replica, cluster, old_primary[1])
            verdict, _ = await check(store, user)  # written on the primary, replicated
            await asyncio.to_thread(_promote, cluster, replica)
            loads = fast.map_loads
            # The old primary, now a replica, answers MOVED; the check follows it to the new
            # primary, where the replicated counter goes on.
            after, _ = await check(store, user)
            assert after.remaining == verdict.remaining - 1
            assert fast.node_for(slot) == ("127.0.0.1", replica)
            await _until(lambda: fast.map_loads > loads)
            assert ("127.0.0.1", replica) in fast.primaries and old_primary not in fast.primaries
