"""The catalog version: a number every worker compares with the catalog (roles, permissions,
plans, features) it holds.

A change to roles, permissions, plans or features bumps the version and publishes it on a
channel; workers reload on the message and, as a safety net, compare versions on a timer.
These two keys are the only ones without a TTL (they are tiny and must not vanish).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from manas360.store.client import Store, reply_int


async def get_catalog_version(store: Store) -> int:
    """The current version (0 when never bumped, e.g. after a Redis flush: no real version)."""
    return reply_int(await store.redis.get(store.keys.catalog_version()))


async def bump_catalog_version(store: Store) -> int:
    """Move the version past both its current value and Redis's clock (µs), and tell every
    worker. Returns the new version, never one handed out before, even across a flush."""
    version = reply_int(await store.run_script("catalog_bump", keys=[store.keys.catalog_version()], args=[]))
    await store.redis.publish(store.keys.catalog_channel(), str(version))
    return version


CLOSE_TIMEOUT_S = 2.0
"""Longest the listener waits for its pub/sub connection to close."""


async def listen_catalog_changes(store: Store, on_change: Callable[[int], Awaitable[None]]) -> None:
    """Call `on_change(version)` for every published bump until cancelled.

    Reconnects after Redis errors (the periodic version poll covers the gap).
    """
    while True:
        pubsub = None
        try:
            pubsub = await store.pubsub()
            await pubsub.subscribe(store.keys.catalog_channel())
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    await on_change(int(message["data"]))
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis gone or restarted: back off, then subscribe again
            await asyncio.sleep(1.0)
        finally:
            try:
                if pubsub is not None:
                    # Bounded: a close stuck on a half-dead connection must not hold up a
                    # worker's shutdown (this runs after the listener was cancelled).
                    await asyncio.wait_for(pubsub.aclose(), CLOSE_TIMEOUT_S)  # type: ignore[no-untyped-call]  # unannotated in redis-py 8.1
            except Exception:  # the connection may already be dead
                pass
