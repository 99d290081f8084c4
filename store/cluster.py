"""redis-py's asyncio RedisCluster, adjusted for a service under concurrent load.

Three behaviours of redis-py 8.1 that a burst of requests on one worker runs into, each
reproduced against a three-master cluster (tests/store/test_cluster_client.py):

- Before its first command the client has no slot map, and commands issued meanwhile are
  routed to a random node: MOVED replies, topology reloads that close connections other
  commands are still using, and some of those commands fail. Here a command waits for the
  map before it is routed.
- Past `max_connections` on one node, a command fails at once with MaxConnectionsError:
  more than that many concurrent requests would get 503s that a single node (one
  auto-pipelined connection) never gives. Here commands and pipelines queue for one of
  `max_connections` permits, for at most the socket timeout; each holds at most one
  connection per node, so no node's pool runs dry.
- When no seed node answers, it raises RedisClusterException, which is not a RedisError:
  the service would answer 500 instead of 503. Here it is a ClusterUnreachable, a
  redis ConnectionError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeVar

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

# Headroom above the permits in each node's pool, for connections taken outside them
# (the reference-change listener's pub/sub connection).
POOL_HEADROOM = 8

_holding_permit: ContextVar[bool] = ContextVar("m360_redis_permit", default=False)

T = TypeVar("T")


class ClusterUnreachable(RedisConnectionError):
    """No seed node of the cluster answered with a usable slot map."""


class ServiceCluster(RedisCluster):
    def __init__(self, *, max_connections: int, queue_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections + POOL_HEADROOM, **kwargs)
        self._permits = asyncio.Semaphore(max_connections)
        self._queue_timeout_s = queue_timeout_s
        self.waiting = 0
        """Commands and pipelines queued for a permit right now."""

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> RedisCluster:
        try:
            return await super().initialize(additional_startup_nodes_info, last_failed_node_name)
        except RedisClusterException as exc:
            raise ClusterUnreachable(str(exc)) from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:  # Any: as redis-py's
        if self._initialize:  # load the slot map before the command is routed
            await self.initialize()
        return await self.within_permit(partial(super().execute_command, *args, **kwargs))

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        # redis-py's command mixins declare _event_dispatcher abstract; ClusterPipeline sets
        # it in __init__ (redis-py's own pipeline() instantiates it just the same).
        return _ServicePipeline(self, transaction)  # type: ignore[abstract]

    async def within_permit(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call()` holding one permit; once per task, so the commands a pipeline
        re-sends after a redirection run under the pipeline's own permit."""
        if _holding_permit.get():
            return await call()
        self.waiting += 1
        try:
            async with asyncio.timeout(self._queue_timeout_s):
                await self._permits.acquire()
        except TimeoutError:
            raise RedisTimeoutError(f"no Redis connection free within {self._queue_timeout_s}s") from None
        finally:
            self.waiting -= 1
        token = _holding_permit.set(True)
        try:
            return await call()
        finally:
            _holding_permit.reset(token)
            self._permits.release()


class _ServicePipeline(ClusterPipeline):
    cluster_client: ServiceCluster  # only ServiceCluster.pipeline() creates one

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        return await self.cluster_client.within_permit(partial(super().execute, raise_on_error, allow_redirections))
