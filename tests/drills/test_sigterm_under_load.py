"""Drill: SIGTERM to the server process while 32 keep-alive clients keep it busy.

docs/architecture.md, "Failure behaviour": stop accepting, finish in-flight requests, close pools,
exit 0. 24 clients hammer the gated GET, 8 hold half-second requests (the real app plus
the slow probe route, served by the same `manas360.server.serve`), so the signal lands
with requests in flight at every stage.

Every request written before the signal gets a complete 200. After it, a new connection
is refused (the listener is closed), and a request written on an older keep-alive
connection may, as HTTP allows, find it closed before the server answered anything; none
gets a cut-off or non-200 answer, and nothing hangs.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.drills.helpers import DASHBOARD, register, report, serving
from tests.fixtures.server import ServerProcess

pytestmark = pytest.mark.slow
GATED_CLIENTS, SLOW_CLIENTS = 24, 8
SLOW_PATH = "/probe/slow?s=0.5"
WARM_REQUESTS = 500
IN_FLIGHT_AT_SIGTERM = 16  # written and not yet answered when the signal is sent
EXIT_BOUND_S = 10.0
KEEP_ALIVE_CLOSED = {"RemoteProtocolError", "ReadError"}
"""How a request written after the signal on a keep-alive connection opened before it may
end without any response byte: the server closed the idle connection (FIN), or the request
reached the kernel just as it did (RST)."""


@dataclass(frozen=True, slots=True)
class Request:
    slow: bool
    sent_at: float | None  # None: never written (the connection was refused)
    connected_at: float  # when its connection was opened
    ended: float
    status: int | None = None
    error: str = ""
    answered: bool = False  # a response head arrived

    def written_before(self, moment: float) -> bool:
        return self.sent_at is not None and self.sent_at < moment


class Load:
    """The clients, the requests they made, and how many are in flight right now."""

    def __init__(self, server: ServerProcess, headers: dict[str, str]) -> None:
        self.server, self.headers = server, headers
        self.requests: list[Request] = []
        self.in_flight = {False: 0, True: 0}  # by slow
        self.connected_at: dict[int, float] = {}  # by client: when its current connection was opened
        self.server_gone = asyncio.Event()

    async def client(self, *, slow: bool) -> None:
        path, headers = (SLOW_PATH, {}) if slow else (DASHBOARD, self.headers)
        async with httpx.AsyncClient(
            base_url=self.server.url, timeout=10, limits=httpx.Limits(max_connections=1)
        ) as client:
            while not self.server_gone.is_set():
                request = await self._send(client, path, headers, slow=slow)
                self.requests.append(request)
                if request.error == "ConnectError":
                    return

    async def _send(self, client: httpx.AsyncClient, path: str, headers: dict[str, str], *, slow: bool) -> Request:
        sent_at, answered = None, False

        async def trace(event: str, info: dict) -> None:
            nonlocal sent_at, answered
            if event == "connection.connect_tcp.complete":
                self.connected_at[id(client)] = time.monotonic()
            elif event == "http11.send_request_headers.complete":
                sent_at = time.monotonic()
                self.in_flight[slow] += 1
            elif event == "http11.receive_response_headers.complete":
                answered = True

        try:
            response = await client.get(path, headers=headers, extensions={"trace": trace})
            outcome = {"status": response.status_code}
        except httpx.TransportError as exc:
            outcome = {"error": type(exc).__name__}
        finally:
            self.in_flight[slow] -= sent_at is not None
        return Request(
            slow, sent_at, self.connected_at.get(id(client), 0.0), time.monotonic(), answered=answered, **outcome
        )


async def _sigterm_under(load: Load) -> tuple[float, int, float, dict[bool, int]]:
    clients = [asyncio.create_task(load.client(slow=slow)) for slow in [False] * GATED_CLIENTS + [True] * SLOW_CLIENTS]
    deadline = time.monotonic() + 30
    while (
        len(load.requests) < WARM_REQUESTS
        or load.in_flight[True] < SLOW_CLIENTS
        or sum(load.in_flight.values()) < IN_FLIGHT_AT_SIGTERM
    ):
        assert time.monotonic() < deadline, f"the load never reached {IN_FLIGHT_AT_SIGTERM} requests in flight"
        await asyncio.sleep(0)
    in_flight = dict(load.in_flight)
    term_at = time.monotonic()
    load.server.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(load.server.process.wait, EXIT_BOUND_S + 10)
    exit_s = time.monotonic() - term_at
    load.server_gone.set()
    await asyncio.wait_for(asyncio.gather(*clients), 15)
    return term_at, code, exit_s, in_flight


def test_sigterm_under_load_answers_every_request_in_flight_and_exits_zero(drill_environ, tmp_path, record_property):
    with serving(drill_environ(), tmp_path, factory="tests.fixtures.slow_app:create_slow_app") as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            load = Load(server, register(http).headers)
        term_at, code, exit_s, in_flight = asyncio.run(_sigterm_under(load))

        before = [r for r in load.requests if r.written_before(term_at)]
        after = [r for r in load.requests if not r.written_before(term_at)]
        assert code == 0, server.log()
        assert exit_s < EXIT_BOUND_S
        assert {(r.status, r.error) for r in before} == {(200, "")}, _summary(before, term_at)
        assert sum(r.ended > term_at for r in before) == sum(in_flight.values())  # all answered during the drain
        assert {r.status for r in after} <= {200, None}, _summary(after, term_at)
        unanswered = [r for r in after if r.status is None]
        refused = [r for r in unanswered if r.sent_at is None]
        closed = [r for r in unanswered if r.sent_at is not None]
        assert {r.error for r in refused} <= {"ConnectError"}, _summary(after, term_at)
        assert not [r for r in closed if r.answered or r.error not in KEEP_ALIVE_CLOSED or r.connected_at > term_at], (
            _summary(after, term_at)
        )  # a connection opened after the signal was never accepted

    numbers = {
        "in_flight_at_sigterm": sum(in_flight.values()),
        "in_flight_slow": in_flight[True],
        "in_flight_ok": sum(r.ended > term_at and r.status == 200 for r in before),
        "written_after_ok": sum(r.status == 200 for r in after),
        "keep_alive_closed_after": len(closed),
        "refused_after": len(refused),
        "exit_s": round(exit_s, 3),
        "exit_code": code,
    }
    report(record_property, "sigterm", numbers)


def _summary(requests: list[Request], term_at: float) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    for r in requests:
        key = (
            "slow" if r.slow else "gated",
            r.status,
            r.error,
            "answered" if r.answered else "unanswered",
            "connection opened after the signal" if r.connected_at > term_at else "",
        )
        counts[key] = counts.get(key, 0) + 1
    return counts
