"""The hot path's auto-pipelined connections on a Redis Cluster: one per node, routed by slot.

`PipelinedRedis` (one connection, every command of an event-loop tick in one write) is what
makes a single node fast; redis-py's RedisCluster costs about ten times more Python per
command. `RoutedPipelinedRedis` offers the same calls (`execute`, `execute_many`, `aclose`)
on a cluster: each command goes to the `PipelinedRedis` of the primary that owns its key's
slot (CRC16 of the key's hash tag, looked up in the cluster's slot map), so the commands of
all concurrent requests for one node still share one write. `execute_many` sends commands
of different slots to their nodes in the same tick and waits for the slower one.

The key of a command is its first argument (GET, SET, …) or, for EVAL/EVALSHA/FCALL, its
first declared key: a script must keep all its keys in one slot, as every script here does
with the `{u:<id>}` / `{ip:<address>}` / `{login:…}` tags. A command without a key (PING)
goes to any primary.

Cluster events, handled here as redis-py handles them:
- The slot map (`CLUSTER SLOTS`) is loaded before the first command, from any node that
  answers: the known primaries first, then the seeds of REDIS_URL.
- `MOVED <slot> <node>` (resharding, failover): the slot is pointed at the new owner at once,
  the command re-sent there, and the whole map reloaded in the background (other slots
  probably moved too), asking the new owner first.
- `ASK <slot> <node>` (a slot in migration, the key already gone): `ASKING` and the command
  are sent to the importing node in one write, the map unchanged. `TRYAGAIN` (a multi-key
  command during a migration): re-sent after a short pause.
- A connection error or a timeout fails the command (ConnectionError/TimeoutError: 503
  upstream, never retried blindly: a script may have run) and marks the map stale: it is
  reloaded in the background, at most every `REFRESH_INTERVAL_S`, so a failover's new
  primary is found. The node's connection reopens on its next command, so a restarted node
  serves again without a restart of the worker.
- NOSCRIPT comes back to the caller (the Store answers it with EVAL on the same route):
  each node has its own script cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Awaitable

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ConnectionError, RedisError, ResponseError, TimeoutError

from manas360.store.pipelined import CommandArg, PipelinedRedis, gather_replies
from manas360.store.url import RedisConfig

Address = tuple[str, int]

MAX_REDIRECTS = 5
"""MOVED/ASK replies one command follows before its error goes to the caller."""
REFRESH_INTERVAL_S = 0.5
"""Least time between two background reloads of the slot map."""
TRYAGAIN_PAUSE_S = 0.02
"""Pause before re-sending a command answered TRYAGAIN; it is re-sent until the socket
timeout has passed since it was first sent, then the error goes to the caller."""

_SCRIPT_CALLS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
_KEYLESS = frozenset({"PING", "ECHO", "TIME", "INFO", "SCRIPT", "CLUSTER", "ASKING", "READONLY", "DBSIZE"})


def command_slot(command: tuple[CommandArg, ...]) -> int | None:
    """The hash slot a command must run on; None when it has no key (any node will do)."""
    name = str(command[0]).upper()
    if name in _SCRIPT_CALLS:
        if int(command[2]) == 0:
            return None
        key = command[3]
    elif name in _KEYLESS or len(command) < 2:
        return None
    else:
        key = command[1]
    return key_slot(key if isinstance(key, bytes) else str(key).encode())


class RoutedPipelinedRedis:
    def __init__(self, *, config: RedisConfig, timeout_s: float = 1.0, connect_timeout_s: float = 1.0) -> None:
        """A cluster's seeds and credentials in `config` (cluster=True); no I/O until first use."""
        if not config.cluster:
            raise ValueError("a routed connection needs a cluster configuration")
        self._config = config
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._nodes: dict[Address, PipelinedRedis] = {}
        self._slots: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._primaries: list[Address] = []
        self._loaded = False
        self._loading: asyncio.Future[None] | None = None
        self._last_load = float("-inf")
        self._reload_timer: asyncio.TimerHandle | None = None
        self._ask_first: Address | None = None
        self.map_loads = 0
        """Slot maps loaded so far (for tests and the curious)."""
        self.redirections: Counter[str] = Counter()
        """MOVED, ASK and TRYAGAIN replies followed so far."""

    async def execute(self, *args: CommandArg) -> object:
        """Send one command to the node owning its slot (coalesced with the other commands
        of this tick for that node) and await its reply, following redirections."""
        if not self._loaded:
            await self._load_map()
        slot = command_slot(args)
        node = self._owner(slot)
        return await self._follow(args, slot, node, self._node(node).submit(args))

    async def execute_many(self, *commands: tuple[CommandArg, ...]) -> list[object]:
        """Send several commands, each to its slot's node, all in this tick; their replies (or
        the first error, once all are in) in order."""
        if not self._loaded:
            await self._load_map()
        pending: list[Awaitable[object]] = []
        for command in commands:
            slot = command_slot(command)
            node = self._owner(slot)
            pending.append(self._follow(command, slot, node, self._node(node).submit(command)))
        return await gather_replies(pending)

    async def aclose(self) -> None:
        if self._reload_timer is not None:
            self._reload_timer.cancel()
            self._reload_timer = None
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        for node in list(self._nodes.values()):
            await node.aclose()

    @property
    def primaries(self) -> list[Address]:
        """The primaries of the slot map last loaded."""
        return list(self._primaries)

    def node_for(self, slot: int) -> Address | None:
        """The primary this client routes `slot` to."""
        return self._slots[slot]

    async def _follow(
        self, command: tuple[CommandArg, ...], slot: int | None, node: Address, sent: Awaitable[object]
    ) -> object:
        """The reply of `command`, already sent to `node`; re-sent where a redirection says."""
        redirects = 0
        give_up_at: float | None = None
        while True:
            try:
                return await sent
            except ResponseError as exc:
                message = str(exc)
                kind = message.split(" ", 1)[0]
                if kind in ("MOVED", "ASK", "TRYAGAIN"):
                    self.redirections[kind] += 1
                if (kind == "MOVED" or kind == "ASK") and redirects < MAX_REDIRECTS:
                    redirects += 1
                    _, moved_slot, where = message.split(" ")
                    target = _address(where, default_host=node[0])
                    if kind == "MOVED":
                        self._slots[int(moved_slot)] = target
                        self.mark_stale(ask_first=target)
                        node, sent = target, self._node(target).submit(command)
                    else:
                        node, sent = target, self._asking(target, command)
                    continue
                if kind == "TRYAGAIN":
                    # A multi-key command (a script) on a slot in migration while its keys
                    # are split between the two nodes: the migration finishes in moments.
                    now = asyncio.get_running_loop().time()
                    give_up_at = give_up_at or now + self._timeout_s
                    if now + TRYAGAIN_PAUSE_S > give_up_at:
                        raise
                    await asyncio.sleep(TRYAGAIN_PAUSE_S)
                    redirects = 0  # the owner sends it to the importing node again: ASK
                    node = self._owner(slot)
                    sent = self._node(node).submit(command)
                    continue
                if kind == "CLUSTERDOWN":
                    self.mark_stale()
                raise
            except (ConnectionError, TimeoutError):
                # Not re-sent: the command may have run (a script, a counter). The map may be
                # out of date (a failover): reload it for the next commands.
                self.mark_stale()
                raise

    async def _asking(self, node: Address, command: tuple[CommandArg, ...]) -> object:
        # ASKING allows the next command on the same connection only: one write, in order.
        _, reply = await self._node(node).execute_many(("ASKING",), command)
        return reply

    def _owner(self, slot: int | None) -> Address:
        if slot is None:
            return self._primaries[0] if self._primaries else self._config.hosts[0]
        node = self._slots[slot]
        if node is None:
            self.mark_stale()
            raise ConnectionError(f"no Redis Cluster node serves slot {slot}")
        return node

    def _node(self, address: Address) -> PipelinedRedis:
        node = self._nodes.get(address)
        if node is None:
            # Every node connects as the seeds do: same credentials, same TLS settings.
            config = dataclasses.replace(self._config, hosts=(address,), cluster=False, db=0)
            node = PipelinedRedis(config=config, timeout_s=self._timeout_s, connect_timeout_s=self._connect_timeout_s)
            self._nodes[address] = node
        return node

    def mark_stale(self, *, ask_first: Address | None = None) -> None:
        """Reload the slot map in the background, at most every REFRESH_INTERVAL_S; from
        `ask_first` if given (a MOVED's target knows the slot is its own, where a node the
        news has not reached yet would hand back the old map)."""
        if ask_first is not None:
            self._ask_first = ask_first
        if (self._loading is not None and not self._loading.done()) or self._reload_timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_load + REFRESH_INTERVAL_S - loop.time()
        if delay > 0:
            self._reload_timer = loop.call_later(delay, self._reload_in_background)
        else:
            self._reload_in_background()

    def _reload_in_background(self) -> None:
        self._reload_timer = None
        self._start_load().add_done_callback(_ignore_outcome)

    async def _load_map(self) -> None:
        """Load the slot map; concurrent callers share one load."""
        loading = self._start_load()
        await asyncio.shield(loading)

    def _start_load(self) -> asyncio.Future[None]:
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self._fetch_map())
        return self._loading

    async def _fetch_map(self) -> None:
        self._last_load = asyncio.get_running_loop().time()
        first, self._ask_first = self._ask_first, None
        candidates = list(dict.fromkeys([*([first] if first else []), *self._primaries, *self._config.hosts]))
        failure: Exception | None = None
        for address in candidates:
            try:
                reply = await self._node(address).execute("CLUSTER", "SLOTS")
            except RedisError as exc:  # that node is down or not a cluster node: ask the next
                failure = exc
                continue
            self._apply(reply, asked=address)
            return
        raise ConnectionError(f"no Redis Cluster node answered ({self._config.where}): {failure!r}")

    def _apply(self, reply: object, *, asked: Address) -> None:
        if not isinstance(reply, list) or not reply:
            raise ConnectionError(f"CLUSTER SLOTS answered {reply!r}")
        slots: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        primaries: dict[Address, None] = {}
        for start, end, primary, *_replicas in reply:
            host, port = primary[0], int(primary[1])
            # An empty host (or "?") means "the address you reached me at".
            address = (host if host and host != "?" else asked[0], port)
            primaries[address] = None
            slots[int(start) : int(end) + 1] = [address] * (int(end) - int(start) + 1)
        self._slots, self._primaries = slots, list(primaries)
        self._loaded = True
        self.map_loads += 1


def _address(where: str, *, default_host: str) -> Address:
    host, _, port = where.rpartition(":")
    return (host or default_host, int(port))


def _ignore_outcome(future: asyncio.Future[None]) -> None:
    # A background reload that failed leaves the old map in place; the next connection error
    # or redirection tries again. Retrieve the exception so asyncio does not log it.
    if not future.cancelled():
        future.exception()
