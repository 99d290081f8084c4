"""The Redis connection handle: one pool per worker, short timeouts, a deliberate retry.

redis-py's defaults (5 s timeouts, 10 retries) hold a request for seconds when Redis is
gone; an auth service must fail fast and answer 503 instead, so timeouts are short and a
command is retried once at most (enough to ride over a reconnect after a restart).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from manas360.store.cluster import ServiceCluster
from manas360.store.keys import Keys
from manas360.store.pipelined import FastRedis, PipelinedRedis, pack_command
from manas360.store.routed import RoutedPipelinedRedis
from manas360.store.url import parse_redis_url

StoreUnavailable = RedisError
"""Any failure talking to Redis. The HTTP layer maps it to 503 ServiceUnavailable."""


_SCRIPT_DIR = Path(__file__).parent

PREPARED_COMMANDS = 10_000
"""How many packed script calls a Store keeps (`run_script_prepared`; the per-request check
makes one per token and client, ~1 KB each)."""

ScriptArg = str | int | float
"""An ARGV value of a Lua script (sent as its string form)."""

ScriptCallBuilder = Callable[[Keys, tuple[Any, ...]], tuple[list[str], list[ScriptArg]]]
"""The keys and arguments of a prepared script call, from the Store's Keys and the call."""


def reply_items(reply: object, count: int, *, script: str) -> list[Any]:
    """The `count` items of a script's array reply; TypeError if the reply is not such an
    array (the script and its caller disagree). The items are Redis values, whose types
    only the script knows, hence Any."""
    if not isinstance(reply, list) or len(reply) != count:
        raise TypeError(f"{script}.lua answered {reply!r}, not an array of {count}")
    return reply


def reply_int(value: object) -> int:
    """An integer reply, or an integer kept as a string value (0 when nil or empty)."""
    if value is None:
        return 0
    if not isinstance(value, int | str | bytes):
        raise TypeError(f"Redis answered {value!r}, not an integer")
    return int(value or 0)


@dataclass(slots=True)
class Store:
    redis: Redis | ServiceCluster
    keys: Keys
    cluster: bool = False
    # Per-request scripts go through auto-pipelined connections: one per worker on a single
    # node (PipelinedRedis), one per node routed by slot on a cluster (RoutedPipelinedRedis).
    fast: FastRedis | None = None
    _scripts: dict[str, tuple[str, str]] = field(default_factory=dict)
    prepared: dict[tuple[str, tuple[object, ...]], bytes] = field(default_factory=dict)
    """Script calls packed once and sent again (`run_script_prepared`)."""

    async def run_script(self, name: str, *, keys: list[str], args: list[ScriptArg]) -> object:
        """EVALSHA the Lua script `<name>.lua` beside this package; load it on NOSCRIPT."""
        source, sha = self.script(name)
        if self.fast is not None:
            try:
                return await self.fast.execute("EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:
                return await self.fast.execute("EVAL", source, len(keys), *keys, *args)
        try:
            return await self.redis.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.eval(source, len(keys), *keys, *args)

    async def run_script_prepared(self, name: str, call: tuple[Any, ...], build: ScriptCallBuilder) -> object:
        """`run_script` for a call made again and again with the same keys and arguments,
        which `call` identifies (a hashable tuple of them): on the single node's pipelined
        connection its EVALSHA is packed once and the bytes are sent again (packing a
        14-argument call was ~8 us of every gated request). `build(keys, call)` gives the
        keys and arguments; it runs only when the call is new, or when Redis lost the script
        and it goes whole (EVAL). A module-level function, so that a call allocates nothing.
        At most PREPARED_COMMANDS are kept, the oldest dropped first."""
        fast = self.fast
        if not isinstance(fast, PipelinedRedis):  # a cluster's connections route each command by
            # its keys, and a Store opened without a pipelined connection goes through redis-py
            keys, args = build(self.keys, call)
            return await self.run_script(name, keys=keys, args=args)
        prepared, entry = self.prepared, (name, call)
        packed = prepared.get(entry)
        if packed is None:
            keys, args = build(self.keys, call)
            packed = pack_command(("EVALSHA", self.script(name)[1], len(keys), *keys, *args))
            if len(prepared) >= PREPARED_COMMANDS:
                del prepared[next(iter(prepared))]
            prepared[entry] = packed
        try:
            return await fast.execute_packed(packed)
        except NoScriptError:
            keys, args = build(self.keys, call)
            return await fast.execute("EVAL", self.script(name)[0], len(keys), *keys, *args)

    async def run_script_and_get(
        self, name: str, *, keys: list[str], args: list[ScriptArg], get: str
    ) -> tuple[object, object]:
        """Run a script and GET one more key, e.g. a version that lives outside the script's
        hash slot: one write and one round trip on a single node; on a cluster the two
        commands go out in the same tick to the nodes owning each slot (possibly two)."""
        source, sha = self.script(name)
        reply: object
        value: object
        if self.fast is None:
            reply, value = await asyncio.gather(self.run_script(name, keys=keys, args=args), self.redis.get(get))
            return reply, value
        try:
            reply, value = await self.fast.execute_many(("EVALSHA", sha, len(keys), *keys, *args), ("GET", get))
        except NoScriptError:
            reply, value = await self.fast.execute_many(("EVAL", source, len(keys), *keys, *args), ("GET", get))
        return reply, value

    async def pubsub(self) -> PubSub:
        """A pub/sub handle, ready to subscribe. A cluster client picks the node for a
        channel from its slot map, which it only loads on its first command: without this,
        a listener started before any other command fails its first subscribe."""
        if isinstance(self.redis, ServiceCluster):
            await self.redis.initialize()  # a no-op once the map is loaded
        return self.redis.pubsub()

    def script(self, name: str) -> tuple[str, str]:
        """(source, sha1) of a script."""
        return self._scripts.get(name) or self._load_source(name)

    async def load_script(self, name: str) -> None:
        """SCRIPT LOAD a script before `queue_script` batches it (nothing to do on a cluster)."""
        if not self.cluster:
            await self.redis.script_load(self.script(name)[0])

    def queue_script(
        self, pipe: Pipeline | ClusterPipeline, name: str, *, keys: list[str], args: list[ScriptArg]
    ) -> None:
        """Add the script to a pipeline: EVALSHA on a single node (after `load_script`).

        On a cluster, EVAL with the source: redis-py refuses EVALSHA in a cluster pipeline,
        and with reason: a node without the script in its cache (restarted, or a replica
        promoted on failover) would fail its part of the batch with NOSCRIPT.
        """
        source, sha = self.script(name)
        if self.cluster:
            pipe.eval(source, len(keys), *keys, *args)
        else:
            pipe.evalsha(sha, len(keys), *keys, *args)

    def _load_source(self, name: str) -> tuple[str, str]:
        source = script_source(name)
        entry = (source, hashlib.sha1(source.encode()).hexdigest())
        self._scripts[name] = entry
        return entry


def script_source(name: str) -> str:
    """The Lua of `<name>.lua`, with each `--#include <other>` line replaced by the part of
    `<other>.lua` between its `-- BEGIN <other> core` and `-- END <other> core` markers, so
    one per-request script can reuse the checks of smaller ones."""
    lines: list[str] = []
    for line in (_SCRIPT_DIR / f"{name}.lua").read_text(encoding="utf-8").splitlines():
        if line.startswith("--#include "):
            line = script_core(line.split(maxsplit=1)[1].strip())
        lines.append(line)
    return "\n".join(lines) + "\n"


def script_core(name: str) -> str:
    """The part of `<name>.lua` between `-- BEGIN <name> core` and `-- END <name> core`:
    its functions, without the lines that run them."""
    text = (_SCRIPT_DIR / f"{name}.lua").read_text(encoding="utf-8")
    begin, end = f"-- BEGIN {name} core", f"-- END {name} core"
    return text[text.index(begin) : text.index(end) + len(end)]


def open_store(
    *,
    url: str,
    prefix: str,
    cluster: bool = False,
    socket_timeout_s: float = 1.0,
    connect_timeout_s: float = 1.0,
    max_connections: int = 256,
) -> Store:
    """Create the client (no I/O yet: connections open lazily on first command).

    The URL is parsed once (`store.url`); the pool, the pipelined connection, the cluster
    nodes and pub/sub all connect with that one configuration. ValueError if unusable."""
    config = parse_redis_url(url, cluster=cluster)
    retry = Retry(NoBackoff(), retries=1)
    common: dict[str, Any] = {  # keyword arguments of redis-py's pools and clusters
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "retry": retry,
        "decode_responses": True,
        "health_check_interval": 0,
    }
    if config.cluster:
        client = ServiceCluster(
            max_connections=max_connections, queue_timeout_s=socket_timeout_s, **config.cluster_kwargs(), **common
        )
        routed = RoutedPipelinedRedis(config=config, timeout_s=socket_timeout_s, connect_timeout_s=connect_timeout_s)
        return Store(redis=client, keys=Keys(prefix), cluster=True, fast=routed)
    pool = ConnectionPool(max_connections=max_connections, **config.pool_kwargs(), **common)
    fast = PipelinedRedis(config=config, timeout_s=socket_timeout_s, connect_timeout_s=connect_timeout_s)
    return Store(redis=Redis(connection_pool=pool), keys=Keys(prefix), fast=fast)


async def close_store(store: Store) -> None:
    if store.fast is not None:
        await store.fast.aclose()
    await store.redis.aclose()


async def ping(store: Store) -> bool:
    """Round-trip to Redis (raises StoreUnavailable when it does not answer); on a cluster,
    to every primary, since each one owns a share of the users."""
    if isinstance(store.redis, ServiceCluster):
        return bool(await store.redis.ping(target_nodes=RedisCluster.PRIMARIES))
    return bool(await store.redis.ping())


def pool_stats(store: Store) -> dict[str, int]:
    """Connections of this worker's redis-py pool(s); on a cluster, summed over the nodes
    (each node has its own pool of up to `max_connections`)."""
    if isinstance(store.redis, ServiceCluster):
        nodes = store.redis.get_nodes()
        idle = sum(len(node._free) for node in nodes)  # redis-py exposes no public counters
        return {
            "nodes": len(nodes),
            "max": sum(node.max_connections for node in nodes),
            "in_use": sum(len(node._connections) for node in nodes) - idle,
            "idle": idle,
            "waiting": store.redis.waiting,
        }
    pool = store.redis.connection_pool
    return {
        "max": pool.max_connections,
        "in_use": len(pool._in_use_connections),
        "idle": len(pool._available_connections),
    }
