"""The whole app on a cluster of this module's own while one primary dies and comes back:
its users get 503 (fail closed, never a check skipped), the others are served, and the
same running app serves everyone again once the node is back, without a restart."""

from __future__ import annotations

import asyncio

import pytest
from redis.crc import key_slot

from manas360.settings import load_settings
from tests.fixtures.accounts import API, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.redis_cluster import start_redis_cluster


@pytest.fixture(scope="module")
def outage_cluster():
    with start_redis_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
async def outage_app(environ, outage_cluster, database):
    settings = load_settings(
        {**environ, "REDIS_URL": outage_cluster.url, "REDIS_PREFIX": f"{environ['REDIS_PREFIX']}outage:"}
    )
    async with running_app(settings) as app:
        yield app


async def test_a_dead_primary_answers_503_for_its_users_and_recovers_without_restart(outage_app, outage_cluster):
    store = outage_app.ctx.deps.store
    async with client_for(outage_app) as client:
        accounts = [await register(client) for _ in range(6)]
        for account in accounts:
            assert (await client.get(f"{API}/me", headers=account.headers)).status_code == 200
        fast = store.fast
        version_node = fast.node_for(key_slot(store.keys.catalog_version().encode()))
        by_node = {fast.node_for(key_slot(store.keys.user_context(a.id).encode())): a for a in accounts}
        victim = next((node for node in by_node if node != version_node), None)
        assert victim is not None, "six users all on the version's node"
        outage_cluster.kill(victim[1])
        try:
            down = await client.get(f"{API}/me", headers=by_node[victim].headers)
            assert (down.status_code, down.json()["error"]) == (503, "ServiceUnavailable")
            for node, account in by_node.items():
                if node != victim:
                    assert (await client.get(f"{API}/me", headers=account.headers)).status_code == 200
        finally:
            await asyncio.to_thread(outage_cluster.restart, victim[1])
        # The node is back, empty: the user's state is reloaded from PostgreSQL on this miss.
        back = await client.get(f"{API}/me", headers=by_node[victim].headers)
        assert back.status_code == 200 and back.json()["id"] == by_node[victim].id
