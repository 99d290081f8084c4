"""The real app with REDIS_URL pointing at the throwaway Redis Cluster (configuration only:
the same open_store call, another URL), on the run's PostgreSQL database."""

from __future__ import annotations

import pytest

from manas360.settings import load_settings
from tests.fixtures.app import client_for, running_app
from tests.fixtures.environment import delete_prefixed_keys
from tests.fixtures.redis_cluster import redis_cluster  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def cluster_settings(environ, redis_cluster):  # noqa: F811
    return load_settings(
        {**environ, "REDIS_URL": redis_cluster.url, "REDIS_PREFIX": f"{environ['REDIS_PREFIX']}cluster:"}
    )


@pytest.fixture(scope="module")
async def cluster_app(cluster_settings, database):
    async with running_app(cluster_settings) as app:
        yield app
        await delete_prefixed_keys(app.ctx.deps.store.redis, cluster_settings.redis_prefix)


@pytest.fixture
async def cluster_client(cluster_app):
    async with client_for(cluster_app) as client:
        yield client
