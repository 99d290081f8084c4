"""An auto-pipelining Redis connection for the hot path: one TCP connection per worker.

Every command issued during one event-loop tick is written in a single `write()` and the
replies are matched in order (Redis answers a connection's commands FIFO). Concurrent
requests therefore share round trips and syscalls instead of each paying redis-py's
per-command Python cost; measured on this project's hardware, this was the biggest lever
on the gated GET (BENCHMARKS.md). Only the per-request scripts use it; everything else stays on
redis-py.

Failure model: a connection that errors, closes, or leaves a command unanswered past
`timeout_s` is dropped and every waiting command fails with `ConnectionError`/`TimeoutError`
(both `redis.exceptions`, so the HTTP layer answers 503). The next command reconnects.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Protocol, cast

import hiredis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from manas360.store.url import RedisConfig, parse_redis_url

CommandArg = str | int | float | bytes
"""One word of a Redis command, as hiredis packs it."""


def pack_command(command: tuple[CommandArg, ...]) -> bytes:
    """`command` in Redis's wire format (RESP), as `execute` sends it."""
    # hiredis's stub types the argument as a one-item tuple (Tuple[X]); it packs any length.
    packed: bytes = hiredis.pack_command(cast(tuple[CommandArg], command))
    return packed


class FastRedis(Protocol):
    """What the Store's hot path needs of its connection: `PipelinedRedis` on a single node,
    `store.routed.RoutedPipelinedRedis` on a cluster (the same calls, routed by key slot)."""

    async def execute(self, *args: CommandArg) -> object: ...

    async def execute_many(self, *commands: tuple[CommandArg, ...]) -> list[object]: ...

    async def aclose(self) -> None: ...


class PipelinedRedis:
    def __init__(
        self,
        *,
        config: RedisConfig | None = None,
        url: str | None = None,
        timeout_s: float = 1.0,
        connect_timeout_s: float = 1.0,
    ) -> None:
        """Connect as `config` says (or `url`, parsed the same way); lazily, on first use."""
        if config is None:
            if url is None:
                raise TypeError("give exactly one of config= or url=")
            config = parse_redis_url(url)
        elif url is not None:
            raise TypeError("give exactly one of config= or url=")
        if config.cluster:
            raise ValueError("a pipelined connection talks to one node, not a cluster")
        self._config = config
        # Built once here, not per connect: a TLS context loads its CA and certificates.
        self._ssl = config.ssl_context()
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def execute(self, *args: CommandArg) -> object:
        """Send one command (coalesced with others of this tick) and await its reply."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        return await protocol.send(pack_command(args))

    def execute_packed(self, packed: bytes) -> Awaitable[object]:
        """`execute` of a command already packed by `pack_command` (reused, not re-packed):
        await the result for its reply. Connected, the command joins this tick's write at
        once and the caller awaits the reply's future itself (no coroutine in between: this
        is every gated request's call)."""
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol.send(packed)
        return self._connect_and_send(packed)

    async def _connect_and_send(self, packed: bytes) -> object:
        protocol = await self._connect()
        return await protocol.send(packed)

    async def execute_many(self, *commands: tuple[CommandArg, ...]) -> list[object]:
        """Send several commands in the same write; their replies (or errors) in order."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        return await gather_replies([protocol.send(pack_command(args)) for args in commands])

    def submit(self, command: tuple[CommandArg, ...]) -> Awaitable[object]:
        """Queue `command` into this tick's write right away, not when awaited (so commands
        for several connections go out in the same tick); await the result for its reply.
        Not connected yet: a task that connects first."""
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol.send(pack_command(command))
        return asyncio.ensure_future(self.execute(*command))

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        config = self._config
        factory = lambda: _Protocol(self._timeout_s)  # noqa: E731
        try:
            if config.path:
                connecting = loop.create_unix_connection(factory, config.path)
            else:
                host, port = config.hosts[0]
                # With TLS, the host name is what the certificate is checked against (as
                # redis-py does); there is no plain-text fallback.
                connecting = loop.create_connection(
                    factory, host, port, ssl=self._ssl, server_hostname=host if self._ssl else None
                )
            _, protocol = await asyncio.wait_for(connecting, self._connect_timeout_s)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise ConnectionError(f"cannot connect to Redis at {config.where}: {exc!r}") from None
        try:
            if config.password:
                auth: tuple[CommandArg, ...] = (
                    ("AUTH", config.username, config.password) if config.username else ("AUTH", config.password)
                )
                await protocol.send(pack_command(auth))
            if config.db:
                await protocol.send(pack_command(("SELECT", config.db)))
        except BaseException:
            protocol.abort(ConnectionError("Redis refused the connection's AUTH or SELECT"))
            raise
        self._protocol = protocol
        return protocol

    async def aclose(self) -> None:
        if self._protocol is not None:
            self._protocol.abort(ConnectionError("connection closed"))
            self._protocol = None


async def gather_replies(pending: list[Awaitable[object]]) -> list[object]:
    """The replies of commands already sent, in order; the first error is raised once every
    outcome is collected, so no failure goes unretrieved."""
    replies: list[object] = []
    first_error: Exception | None = None
    for future in pending:
        try:
            replies.append(await future)
        except Exception as exc:  # re-raised below, after the others are collected
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return replies


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self._waiting: deque[asyncio.Future[object]] = deque()
        self._outbox: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # create_connection and create_unix_connection hand over a stream (read/write) transport.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, packed: bytes) -> asyncio.Future[object]:
        if self.closed:
            raise ConnectionError("Redis connection is closed")
        future: asyncio.Future[object] = self._loop.create_future()
        self._waiting.append(future)
        self._outbox.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed or not self._outbox:
            return
        if self._transport is None:  # the loop calls connection_made before anyone can send
            self.abort(ConnectionError("Redis connection is not established"))
            return
        self._transport.write(b"".join(self._outbox))
        self._outbox.clear()
        if self._watchdog is None:
            self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        # One timer per connection, not per command: if the oldest command is still
        # unanswered when it fires, the server is stalled and the connection is dropped.
        oldest = self._waiting[0] if self._waiting else None
        self._watchdog = self._loop.call_later(self._timeout_s, self._check_stalled, oldest)

    def _check_stalled(self, oldest: asyncio.Future[object] | None) -> None:
        self._watchdog = None
        if oldest is not None and self._waiting and self._waiting[0] is oldest:
            self.abort(TimeoutError(f"Redis did not answer within {self._timeout_s}s"))
        elif self._waiting:
            self._arm_watchdog()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(ConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            future = self._waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                error = NoScriptError if message.startswith("NOSCRIPT") else ResponseError
                future.set_exception(error(message))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(ConnectionError(f"Redis connection lost: {exc!r}" if exc else "Redis closed the connection"))

    def abort(self, error: Exception) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._fail_all(error)

    def _fail_all(self, error: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
