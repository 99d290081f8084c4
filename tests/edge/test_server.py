"""Against a real `manas360 serve` with two workers: the limit holds exactly across
workers, slow clients are cut off, and the limits only Sanic's own server enforces."""

from __future__ import annotations

import asyncio
import socket
import time
from uuid import uuid4

import httpx
import pytest

from tests.edge.conftest import fresh_ip
from tests.fixtures.accounts import PASSWORD
from tests.fixtures.server import start_server

pytestmark = pytest.mark.slow

LIMIT, REQUESTS = 30, 80
TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(edge_environ, database, tmp_path_factory):
    # The loopback peer is a trusted proxy here, so each test counts under a client address
    # of its own (X-Forwarded-For) and none spends another's budget.
    environ = edge_environ(
        RATE_LIMIT_GLOBAL=f"{LIMIT}/600",
        TRUSTED_PROXIES="127.0.0.1/32",
        REQUEST_TIMEOUT_S=str(TIMEOUT_S),
        KEEP_ALIVE_TIMEOUT_S=str(TIMEOUT_S),
    )
    server = start_server(
        environ, workers=2, factory="tests.edge.probes:create_probe_app", tmp_dir=tmp_path_factory.mktemp("edge-server")
    )
    yield server
    server.stop()


def test_two_workers_admit_exactly_the_limit(server):
    client_address = fresh_ip()

    async def connection_on_each_worker(per_worker: int) -> list[httpx.AsyncClient]:
        """Keep-alive connections, `per_worker` of them held by each worker (/health names it)."""
        kept: dict[int, list[httpx.AsyncClient]] = {}
        deadline = time.monotonic() + 20  # the kernel may hand a busy run of connections to one worker
        while time.monotonic() < deadline:
            client = httpx.AsyncClient(base_url=server.url, timeout=10, limits=httpx.Limits(max_connections=1))
            pid = (await client.get("/health")).json()["pid"]
            if len(kept.setdefault(pid, [])) < per_worker:
                kept[pid].append(client)
            else:
                await client.aclose()
            if len(kept) == 2 and all(len(c) == per_worker for c in kept.values()):
                return [client for clients in kept.values() for client in clients]
        pytest.fail(f"could not hold connections on two workers: {list(kept)}")

    async def burst() -> list[httpx.Response]:
        clients = await connection_on_each_worker(4)
        per_client = REQUESTS // len(clients)

        async def run(client):  # one connection's requests in turn, all connections at once
            return [
                await client.get("/probe/ping", headers={"x-forwarded-for": client_address}) for _ in range(per_client)
            ]

        try:
            return [r for batch in await asyncio.gather(*(run(c) for c in clients)) for r in batch]
        finally:
            for client in clients:
                await client.aclose()

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == LIMIT and statuses.count(429) == REQUESTS - LIMIT, server.log()
    assert len({r.json()["pid"] for r in responses if r.status_code == 200}) == 2  # both workers admitted
    remaining = sorted(int(r.headers["ratelimit"].split(";r=")[1].split(";")[0]) for r in responses)
    assert remaining[-LIMIT:] == list(range(LIMIT))  # every admitted request saw its own count


def test_two_workers_admit_exactly_the_limit_on_a_guarded_route(server):
    """On a guarded route the per-IP limit rides in the guard's round trip (or, for a token
    refused before Redis, runs on its own): still one counter, exact across workers."""
    client_address = fresh_ip()
    registered = httpx.post(
        server.url + "/api/v1/auth/register",
        headers={"x-forwarded-for": fresh_ip()},
        json={"email": f"guarded-{uuid4().hex[:12]}@example.com", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    good = {"authorization": f"Bearer {registered.json()['access_token']}", "x-forwarded-for": client_address}
    bad = {"authorization": "Bearer not.a.token", "x-forwarded-for": client_address}

    async def burst() -> list[tuple[int, httpx.Response]]:
        by_worker: dict[int, list[httpx.AsyncClient]] = {}
        deadline = time.monotonic() + 20  # the kernel may hand a busy run of connections to one worker
        while time.monotonic() < deadline:
            client = httpx.AsyncClient(base_url=server.url, timeout=10, limits=httpx.Limits(max_connections=1))
            pid = (await client.get("/health")).json()["pid"]
            if len(by_worker.setdefault(pid, [])) < 4:
                by_worker[pid].append(client)
            else:
                await client.aclose()
            if len(by_worker) == 2 and all(len(c) == 4 for c in by_worker.values()):
                break
        clients = [(pid, client) for pid, kept in by_worker.items() for client in kept]
        assert len(clients) == 8, list(by_worker)

        async def run(pid, client):
            return [
                (pid, await client.get("/api/v1/me", headers=good if i % 2 else bad))
                for i in range(REQUESTS // len(clients))
            ]

        try:
            return [r for batch in await asyncio.gather(*(run(pid, c) for pid, c in clients)) for r in batch]
        finally:
            for _, client in clients:
                await client.aclose()

    responses = asyncio.run(burst())
    statuses = [r.status_code for _, r in responses]
    assert statuses.count(200) + statuses.count(401) == LIMIT, (statuses, server.log())
    assert statuses.count(429) == REQUESTS - LIMIT
    assert len({pid for pid, r in responses if r.status_code == 200}) == 2  # both workers admitted
    remaining = sorted(int(r.headers["ratelimit"].split(";r=")[1].split(";")[0]) for _, r in responses)
    assert remaining[-LIMIT:] == list(range(LIMIT))  # every admitted request saw its own count


def test_a_burst_of_new_connections_admits_exactly_the_limit(server):
    client_address = fresh_ip()

    async def one() -> int:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:  # a connection each
            return (await client.get("/probe/ping", headers={"x-forwarded-for": client_address})).status_code

    async def burst() -> list[int]:
        return await asyncio.gather(*(one() for _ in range(REQUESTS)))

    statuses = asyncio.run(burst())
    assert statuses.count(200) == LIMIT and statuses.count(429) == REQUESTS - LIMIT


def _raw(server, payload: bytes, *, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and not chunk:
                break
        return b"".join(chunks)


def _head(address: str, *lines: str) -> bytes:
    return (
        "GET /probe/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"X-Forwarded-For: {address}\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n"
    ).encode()


def _dribble(server, first: bytes, rest: bytes, *, every_s: float = 0.2, give_up_s: float = 8) -> tuple[float, bytes]:
    """Send `first`, then `rest` a byte at a time: (seconds until the server answered or
    closed, what it answered)."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(every_s)
        started = time.monotonic()
        sock.sendall(first)
        for byte in rest:
            if time.monotonic() - started > give_up_s:
                pytest.fail("the server still holds a slow client's connection")
            try:
                sock.sendall(bytes([byte]))
                return time.monotonic() - started, sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset by the server
                return time.monotonic() - started, b""
        pytest.fail("the whole request was sent before the server gave up")


def assert_timed_out(answer: bytes) -> None:
    assert answer.startswith(b"HTTP/1.1 408 ") and b'"RequestTimeout"' in answer, answer
    assert b"connection: close" in answer.lower()


def test_a_slow_loris_request_head_is_cut_off(server):
    head = _head(fresh_ip(), "X-Padding: " + "a" * 400)
    elapsed, answer = _dribble(server, head[:20], head[20:])
    assert TIMEOUT_S - 0.5 <= elapsed <= TIMEOUT_S + 2
    assert_timed_out(answer)


def test_a_slow_body_is_cut_off(server):
    head = (
        f"POST /probe/json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Forwarded-For: {fresh_ip()}\r\nContent-Length: 500\r\n\r\n"
    ).encode()
    elapsed, answer = _dribble(server, head, b"{" + b" " * 498 + b"}")
    assert TIMEOUT_S - 0.5 <= elapsed <= TIMEOUT_S + 2
    assert_timed_out(answer)


def test_an_oversized_request_head_is_431(server):
    response = _raw(server, _head(fresh_ip(), "X-Big: " + "a" * 9000))
    assert response.startswith(b"HTTP/1.1 431 ") and b'"RequestHeaderFieldsTooLarge"' in response


def test_too_many_header_fields_is_431(server):
    response = _raw(server, _head(fresh_ip(), *(f"X-H{i}: 1" for i in range(150))))
    assert response.startswith(b"HTTP/1.1 431 ") and b'"RequestHeaderFieldsTooLarge"' in response


def test_a_nul_byte_in_a_header_is_400(server):
    response = _raw(server, _head(fresh_ip(), "User-Agent: evil\x00agent"))
    assert response.startswith(b"HTTP/1.1 400 ") and b'"BadRequest"' in response


def test_a_body_over_the_limit_is_413(server):
    response = httpx.post(
        server.url + "/probe/json",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"content-type": "application/json", "x-forwarded-for": fresh_ip()},
    )
    assert response.status_code == 413 and response.json()["error"] == "PayloadTooLarge"


def test_no_server_banner(server):
    response = _raw(server, _head(fresh_ip()))
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200 ")
    assert b"\r\nserver:" not in head and b"sanic" not in head and b"x-powered-by" not in head
