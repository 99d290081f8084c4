"""Requests flowing while a drill breaks something: every outcome recorded with its timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: when it was sent and how long it took (monotonic seconds), and either an
    HTTP status with the envelope's `error` code, or (status None) the transport error."""

    started: float
    elapsed: float
    status: int | None
    error: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


def outcome_of(send: Callable[[], httpx.Response]) -> Outcome:
    started = time.monotonic()
    try:
        response = send()
    except httpx.TransportError as exc:
        return Outcome(started, time.monotonic() - started, None, type(exc).__name__)
    error = "" if response.status_code < 400 else _error_code(response)
    return Outcome(started, time.monotonic() - started, response.status_code, error)


def _error_code(response: httpx.Response) -> str:
    try:
        return response.json().get("error", "?")
    except ValueError:
        return f"non-JSON body: {response.text[:80]!r}"


class Traffic:
    """GET `path` back to back from a background thread on a keep-alive connection (a new
    one after a transport error) until the block exits; `outcomes` holds every answer.
    `client`: start on this one (e.g. a connection pinned to one worker); it is closed."""

    def __init__(
        self,
        url: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
        client: httpx.Client | None = None,
    ) -> None:
        self._url, self._path, self._headers, self._timeout = url, path, headers or {}, timeout
        self._first_client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-traffic", daemon=True)
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(self._timeout + 5)

    @property
    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def wait_for(self, matches: Callable[[Outcome], bool], *, count: int = 1, timeout: float = 15) -> None:
        """Block until `count` recorded outcomes match (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while sum(map(matches, self.outcomes)) < count:
            assert time.monotonic() < deadline, f"traffic: fewer than {count} matching outcomes: {self.summary()}"
            time.sleep(0.02)

    def summary(self, since: float = 0.0) -> dict[tuple[int | None, str], int]:
        counts: dict[tuple[int | None, str], int] = {}
        for outcome in self.outcomes:
            if outcome.started >= since:
                key = (outcome.status, outcome.error)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _run(self) -> None:
        client = self._first_client or self._client()
        try:
            while not self._stop.is_set():
                outcome = outcome_of(lambda client=client: client.get(self._path, headers=self._headers))
                with self._lock:
                    self._outcomes.append(outcome)
                if outcome.status is None:
                    client.close()
                    client = self._client()
                    self._stop.wait(0.01)  # a refused connect returns at once: do not spin
        finally:
            client.close()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self._url, timeout=self._timeout)
