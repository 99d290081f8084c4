"""A Store on the test Redis under a prefix of its own; every key under it goes at the end."""

from __future__ import annotations

from uuid import uuid4

import pytest

from store.client import close_store, open_store
from tests.fixtures.environment import REDIS_URL, delete_prefixed_keys


@pytest.fixture(scope="session")
async def store():
    handle = open_store(url=REDIS_URL, prefix=f"test-{uuid4().hex[:8]}:")
    yield handle
    await delete_prefixed_keys(handle.redis, handle.keys.prefix)
    await close_store(handle)
