"""A Store under a prefix of its own, on each backend: the test Redis ("single") and a
throwaway three-master Redis Cluster ("cluster"). Every test that uses `store` runs on both;
only the URL differs, exactly as in production. Every key under the prefix goes at the end.
"""

from __future__ import annotations

from uuid import uuid4

import pytest

from manas360.store.client import close_store, open_store
from tests.fixtures.environment import REDIS_URL, delete_prefixed_keys
from tests.fixtures.redis_cluster import redis_cluster  # noqa: F401  (a fixture)


@pytest.fixture(scope="session", params=["single", "cluster"])
def store_url(request) -> str:
    """The URL `open_store` gets: the cluster's selects cluster mode by itself."""
    if request.param == "single":
        return REDIS_URL
    return request.getfixturevalue("redis_cluster").url


@pytest.fixture(scope="session")
async def store(store_url):
    handle = open_store(url=store_url, prefix=f"test-{uuid4().hex[:8]}:")
    yield handle
    await delete_prefixed_keys(handle.redis, handle.keys.prefix)
    await close_store(handle)
