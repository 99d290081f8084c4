"""The Redis connection handle: one pool per worker, short timeouts, a deliberate retry.

redis-py's defaults (5 s timeouts, 10 retries) hold a request for seconds when Redis is
gone; an auth service must fail fast and answer 503 instead, so timeouts are short and a
command is retried once at most (enough to ride over a reconnect after a restart).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from store.keys import Keys
from store.pipelined import PipelinedRedis

StoreUnavailable = RedisError
"""Any failure talking to Redis. The HTTP layer maps it to 503 ServiceUnavailable."""

_SCRIPT_DIR = Path(__file__).parent


@dataclass(slots=True)
class Store:
    redis: Redis | RedisCluster
    keys: Keys
    cluster: bool = False
    # Single node: per-request scripts go through one auto-pipelined connection per worker.
    fast: PipelinedRedis | None = None
    _scripts: dict[str, tuple[str, str]] = field(default_factory=dict)

    async def run_script(self, name: str, *, keys: list[str], args: list) -> object:
        """EVALSHA the Lua script `<name>.lua` beside this package; load it on NOSCRIPT."""
        source, sha = self._scripts.get(name) or self._load_source(name)
        if self.fast is not None:
            try:
                return await self.fast.execute("EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:
                return await self.fast.execute("EVAL", source, len(keys), *keys, *args)
        try:
            return await self.redis.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.eval(source, len(keys), *keys, *args)

    async def run_script_and_get(self, name: str, *, keys: list[str], args: list, get: str) -> tuple[object, object]:
        """Run a script and GET one more key in the same round trip (single node), e.g. a
        version that lives outside the script's hash slot."""
        source, sha = self._scripts.get(name) or self._load_source(name)
        if self.fast is None:
            return await self.run_script(name, keys=keys, args=args), await self.redis.get(get)
        try:
            reply, value = await self.fast.execute_many(("EVALSHA", sha, len(keys), *keys, *args), ("GET", get))
        except NoScriptError:
            reply, value = await self.fast.execute_many(("EVAL", source, len(keys), *keys, *args), ("GET", get))
        return reply, value

    def script(self, name: str) -> tuple[str, str]:
        """(source, sha1) of a script, for callers that batch it in a pipeline."""
        return self._scripts.get(name) or self._load_source(name)

    def _load_source(self, name: str) -> tuple[str, str]:
        source = script_source(name)
        entry = (source, hashlib.sha1(source.encode()).hexdigest())
        self._scripts[name] = entry
        return entry


def script_source(name: str) -> str:
    """The Lua of `<name>.lua`, with each `--#include <other>` line replaced by the part of
    `<other>.lua` between its `-- BEGIN <other> core` and `-- END <other> core` markers, so
    one per-request script can reuse the checks of smaller ones."""
    lines = []
    for line in (_SCRIPT_DIR / f"{name}.lua").read_text(encoding="utf-8").splitlines():
        if line.startswith("--#include "):
            other = line.split(maxsplit=1)[1].strip()
            text = (_SCRIPT_DIR / f"{other}.lua").read_text(encoding="utf-8")
            begin, end = f"-- BEGIN {other} core", f"-- END {other} core"
            line = text[text.index(begin):text.index(end) + len(end)]
        lines.append(line)
    return "\n".join(lines) + "\n"


def is_cluster_url(url: str, *, cluster_flag: bool = False) -> bool:
    return cluster_flag or url.startswith("redis+cluster://") or "," in url


def open_store(
    *,
    url: str,
    prefix: str,
    cluster: bool = False,
    socket_timeout_s: float = 1.0,
    connect_timeout_s: float = 1.0,
    max_connections: int = 256,
) -> Store:
    """Create the client (no I/O yet: connections open lazily on first command)."""
    retry = Retry(NoBackoff(), retries=1)
    common = dict(
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        retry=retry,
        decode_responses=True,
        health_check_interval=0,
    )
    if is_cluster_url(url, cluster_flag=cluster):
        nodes = [_cluster_node(part) for part in url.replace("redis+cluster://", "").split(",") if part.strip()]
        client = RedisCluster(startup_nodes=nodes, max_connections=max_connections, **common)
        return Store(redis=client, keys=Keys(prefix), cluster=True)
    pool = ConnectionPool.from_url(url, max_connections=max_connections, **common)
    fast = PipelinedRedis(url=url, timeout_s=socket_timeout_s, connect_timeout_s=connect_timeout_s)
    return Store(redis=Redis(connection_pool=pool), keys=Keys(prefix), fast=fast)


def _cluster_node(part: str) -> ClusterNode:
    part = part.strip()
    parsed = urlsplit(part if "://" in part else f"redis://{part}")
    return ClusterNode(parsed.hostname or "127.0.0.1", parsed.port or 6379)


async def close_store(store: Store) -> None:
    if store.fast is not None:
        await store.fast.aclose()
    await store.redis.aclose()


async def ping(store: Store) -> bool:
    """Round-trip to Redis (raises StoreUnavailable when it does not answer)."""
    return bool(await store.redis.ping())


def pool_stats(store: Store) -> dict[str, int]:
    if store.cluster:
        return {"nodes": len(store.redis.get_nodes())}
    pool = store.redis.connection_pool
    return {
        "max": pool.max_connections,
        "in_use": len(pool._in_use_connections),
        "idle": len(pool._available_connections),
    }
