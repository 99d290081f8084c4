"""A real two-worker server: revocations and locks hold on every worker."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fixtures.accounts import API, PASSWORD, bearer, unique_email

pytestmark = pytest.mark.slow
ROUNDS = 40  # fresh connections; the chance that all land on one of two workers is 2**-39


@pytest.fixture(scope="module")
def http(server):
    """No keep-alive: every request opens a new connection, which any worker may accept."""
    with httpx.Client(base_url=server.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client


def _both_workers_answer(http) -> bool:
    """Wait (bounded) until two worker pids have answered: the second may start later."""
    pids: set[int] = set()
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        pids.add(http.get("/health").json()["pid"])
    return len(pids) == 2


def test_logout_on_one_worker_is_honoured_by_every_worker(http):
    assert _both_workers_answer(http)
    email = unique_email()
    pair = http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD}).json()
    headers = bearer(pair["access_token"])
    assert {http.get(f"{API}/me", headers=headers).status_code for _ in range(ROUNDS)} == {200}
    assert http.post(f"{API}/auth/logout", headers=headers).status_code == 204
    answers = {
        (r.status_code, r.json()["error"]) for r in (http.get(f"{API}/me", headers=headers) for _ in range(ROUNDS))
    }
    assert answers == {(401, "TokenRevoked")}
    refresh = http.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401


def test_logout_all_through_one_worker_is_honoured_by_every_worker(http):
    email = unique_email()
    pairs = [http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD}).json()]
    pairs += [http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD}).json() for _ in range(3)]
    assert http.post(f"{API}/auth/logout-all", headers=bearer(pairs[0]["access_token"])).status_code == 204
    statuses = {
        http.get(f"{API}/me", headers=bearer(pair["access_token"])).status_code
        for pair in pairs
        for _ in range(ROUNDS // 4)
    }
    assert statuses == {401}


def test_a_lock_set_through_one_worker_holds_on_every_worker(http):
    email = unique_email()
    http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    wrong = [http.post(f"{API}/auth/login", json={"email": email, "password": "wrong password"}) for _ in range(5)]
    assert [r.status_code for r in wrong] == [401] * 5
    right = {http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD}).status_code for _ in range(10)}
    assert right == {423}


def test_a_one_megabyte_password_is_413_before_anything_else(http):
    response = http.post(f"{API}/auth/register", json={"email": unique_email(), "password": "p" * 1_000_000})
    assert (response.status_code, response.json()["error"]) == (413, "PayloadTooLarge")
