"""A real server process: several workers, HTTP-level limits, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import httpx
import pytest

from tests.fixtures.gates import eventually
from tests.fixtures.server import start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(environ, database, tmp_path_factory):
    server = start_server(
        environ, workers=2, factory="tests.fixtures.slow_app:create_slow_app", tmp_dir=tmp_path_factory.mktemp("server")
    )
    yield server
    server.stop()


def test_two_workers_serve_and_report_health(server):
    from tests.fixtures.server import clients_per_worker

    # Connections held open while looking: sequential fresh connections may all land on the
    # worker the kernel wakes first (one in ~10 runs reached a single worker in 60 tries).
    clients = clients_per_worker(server.url)
    try:
        bodies = [client.get("/health").json() for client in clients]
        ready = [client.get("/health/ready").status_code for client in clients]
    finally:
        for client in clients:
            client.close()
    for body in bodies:
        assert body["database"] == "ok" and body["redis"] == "ok"
        assert {"uptime_s", "memory", "version", "pool"} <= set(body)
    assert len({body["pid"] for body in bodies}) == 2
    assert ready == [200, 200]


def test_request_ids_are_unique_across_workers(server):
    """Ids the server makes up are 32 hex digits from each worker's own sequence: none
    repeats, within a worker or between the two."""
    from tests.fixtures.server import clients_per_worker

    clients = clients_per_worker(server.url)
    try:
        ids = [client.get("/health/live").headers["x-request-id"] for client in clients for _ in range(200)]
    finally:
        for client in clients:
            client.close()
    assert all(len(rid) == 32 and int(rid, 16) >= 0 for rid in ids)
    assert len(set(ids)) == len(ids)


def test_oversized_body_is_413_envelope(server):
    response = httpx.post(
        server.url + "/probe/slow", content=b"x" * 70_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"


def test_logs_are_json_lines_carrying_the_request_id(server):
    response = httpx.get(server.url + "/probe/crash", headers={"x-request-id": "trace-me-123"})
    assert response.status_code == 500 and "boom" not in response.text
    deadline = time.monotonic() + 5
    while "trace-me-123" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    crash = [line for line in lines if line["request_id"] == "trace-me-123"]
    assert crash and crash[0]["level"] == "ERROR" and "boom" in crash[0]["exception"]


def test_sigterm_lets_in_flight_requests_finish_and_exits_zero(environ, database, tmp_path):
    arrivals = tmp_path / "arrivals"
    arrivals.mkdir()
    server = start_server(
        {**environ, "PROBE_ARRIVALS_DIR": str(arrivals)},
        workers=2,
        factory="tests.fixtures.slow_app:create_slow_app",
        tmp_dir=tmp_path,
    )

    async def in_flight():
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            return await asyncio.gather(*(client.get("/probe/slow", params={"s": "1.5"}) for _ in range(4)))

    async def scenario():
        task = asyncio.create_task(in_flight())
        # All four are inside the handler's sleep (a fixed pause could be too short on a slow machine).
        await eventually(lambda: len(list(arrivals.iterdir())) == 4, what="four requests in the handler")
        started = time.monotonic()
        server.process.send_signal(15)
        responses = await task
        try:
            code = await asyncio.to_thread(server.process.wait, 20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            pytest.fail(f"still running 20 s after SIGTERM:\n{server.log()}")
        return responses, code, time.monotonic() - started

    responses, code, elapsed = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 4, server.log()
    assert code == 0, server.log()
    assert elapsed < 15
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health/live", timeout=1)
