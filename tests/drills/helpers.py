"""The drills' shared moves: serve, register, log in, read an answer."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from manas360.services.ops.health import READINESS_TTL_S
from tests.fixtures.accounts import API, PASSWORD, Account, unique_email
from tests.fixtures.server import ServerProcess, start_server

OUTAGE_ANSWER_BOUND_S = 3.0
"""Longest a request may take while a store is down (its port closed: connections are
refused at once; the Redis connect timeout is 1 s)."""
DASHBOARD = f"{API}/dashboard"


def readiness_after_a_change(client: httpx.Client) -> httpx.Response:
    """/health/ready as a probe sees a store change: each worker reuses its last check for
    READINESS_TTL_S, so ask again until the answer is not 200 or that time has passed."""
    deadline = time.monotonic() + READINESS_TTL_S + 0.2
    while (response := client.get("/health/ready")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    return response


@contextlib.contextmanager
def serving(
    environ: dict[str, str], tmp_dir: Path, *, workers: int = 2, factory: str | None = None
) -> Iterator[ServerProcess]:
    """`manas360 serve` (or `factory` through the same serve path), stopped at exit;
    whatever is left of its process group (workers, Sanic's state manager) is killed, also
    when the drill failed half-way. Its metrics files live under `tmp_dir` too."""
    metrics_dir = tmp_dir / "metrics"
    metrics_dir.mkdir(exist_ok=True)  # a factory module may import prometheus-client before serve() runs
    environ = {**environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    server = start_server(environ, workers=workers, factory=factory, tmp_dir=tmp_dir)
    try:
        yield server
    except BaseException:
        print(f"--- server log (tail) ---\n{server.log()[-6000:]}")  # shown with the failure
        raise
    finally:
        server.stop(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)


def register(http: httpx.Client) -> Account:
    email = unique_email("drill")
    response = http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return Account(email=email, password=PASSWORD, pair=response.json())


def login(http: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return http.post(f"{API}/auth/login", json={"email": email, "password": password})


def answer(response: httpx.Response) -> tuple[int, str]:
    """(status, the envelope's error code or '') — what a drill asserts on."""
    if response.status_code < 400:
        return response.status_code, ""
    return response.status_code, response.json().get("error", "?")


def report(record_property, drill: str, numbers: dict[str, float | int]) -> None:
    """A drill's measurements: as test properties (junit XML) and on stdout (`-s`)."""
    for name, value in numbers.items():
        record_property(name, value)
    print(f"\n{drill} drill: {numbers}")
