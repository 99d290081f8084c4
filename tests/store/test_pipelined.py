"""The hot path's auto-pipelined connection: coalescing, ordering, failures, recovery.

These talk to the test Redis directly rather than through the two-backend `store` fixture;
on a cluster the Store uses one of these per node, routed by slot (tests/store/test_routed.py)."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import pytest
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from manas360.store.pipelined import PipelinedRedis
from tests.fixtures.environment import REDIS_URL


@pytest.fixture
async def fast():
    client = PipelinedRedis(url=REDIS_URL, timeout_s=0.5, connect_timeout_s=0.5)
    yield client
    await client.aclose()


async def test_concurrent_commands_share_one_write_and_keep_their_order(fast):
    key = f"test-pipelined-{uuid4().hex[:8]}:n"
    writes = []
    await fast.execute("PING")
    transport = fast._protocol._transport
    original = transport.write
    transport.write = lambda data: (writes.append(data), original(data))[1]
    try:
        replies = await asyncio.gather(*(fast.execute("INCR", key) for _ in range(200)))
        assert replies == list(range(1, 201))  # FIFO matching: each caller got its own reply
        assert len(writes) == 1
    finally:
        await fast.execute("DEL", key)


async def test_errors_reach_only_their_caller(fast):
    results = await asyncio.gather(
        fast.execute("PING"),
        fast.execute("NOSUCHCOMMAND"),
        fast.execute("EVALSHA", "0" * 40, 0),
        fast.execute("PING"),
        return_exceptions=True,
    )
    assert results[0] == "PONG" and results[3] == "PONG"
    assert isinstance(results[1], ResponseError) and isinstance(results[2], NoScriptError)


async def test_a_closed_port_fails_fast_with_connection_error():
    client = PipelinedRedis(url="redis://127.0.0.1:1/0", timeout_s=0.5, connect_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await client.execute("PING")
    assert time.monotonic() - started < 0.5


async def test_a_stalled_server_times_out_every_waiting_command():
    async def accept_and_say_nothing(reader, writer):
        await reader.read(1 << 16)
        await asyncio.sleep(5)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = PipelinedRedis(url=f"redis://127.0.0.1:{port}/0", timeout_s=0.3)
    started = time.monotonic()
    results = await asyncio.gather(*(client.execute("PING") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results)
    assert time.monotonic() - started < 1.5
    server.close()
    await client.aclose()


async def test_a_killed_connection_is_replaced_on_the_next_command(fast, redis_raw):
    await fast.execute("CLIENT", "SETNAME", "m360-pipelined-test")
    clients = await redis_raw.client_list()
    victim = next(c for c in clients if c["name"] == "m360-pipelined-test")
    await redis_raw.client_kill_filter(_id=victim["id"])
    for _ in range(50):
        if fast._protocol.closed:
            break
        await asyncio.sleep(0.01)
    assert await fast.execute("PING") == "PONG"


async def test_execute_many_shares_a_write_and_raises_the_first_error(fast):
    assert await fast.execute_many(("PING",), ("ECHO", "x")) == ["PONG", "x"]
    with pytest.raises(NoScriptError):
        await fast.execute_many(("EVALSHA", "0" * 40, 0), ("PING",))
    assert await fast.execute("PING") == "PONG"
