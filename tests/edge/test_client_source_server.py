"""Against a real `manas360 serve` (two workers, the shipped policy table, behind a trusted
proxy): the addresses of one IPv6 /64, however they are written, are one client for
`global` (checked by the edge, in the guard's round trip, and on its own for a refused
token) and for `auth`."""

from __future__ import annotations

import ipaddress
from uuid import uuid4

import httpx
import pytest

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.server import start_server

pytestmark = pytest.mark.slow

GLOBAL, AUTH = 9, 3


@pytest.fixture(scope="module")
def server(environ, database, tmp_path_factory):
    environ = {
        **environ,
        "REDIS_PREFIX": f"{environ['REDIS_PREFIX']}source-{uuid4().hex[:8]}:",
        "RATE_LIMIT_GLOBAL": f"{GLOBAL}/600",
        "RATE_LIMIT_AUTH": f"{AUTH}/600",
        "TRUSTED_PROXIES": "127.0.0.1/32",
    }
    server = start_server(environ, workers=2, tmp_dir=tmp_path_factory.mktemp("source-server"))
    yield server
    server.stop()


def spelled(network: str, n: int) -> str:
    """The n-th address of `network` (a /64), each time written another way."""
    address = ipaddress.IPv6Network(network)[n * 0x1_0001_0001 + 1]
    return [
        str(address),
        str(address).upper(),
        f"[{address}]:443",
        f"[{address}]",
        address.exploded,
        f"{address}%eth{n}",
        f"[{address}%eth0]:80",
        f"{address}, 127.0.0.1",
    ][n % 8]


def remaining(response: httpx.Response, policy: str) -> int:
    item = next(i for i in response.headers["ratelimit"].split(", ") if i.startswith(f'"{policy}"'))
    return int(item.split(";r=")[1].split(";")[0])


def test_one_64_has_one_global_budget_on_public_and_guarded_routes(server):
    network = "2001:db8:64:1::/64"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        registered = client.post(
            "/api/v1/auth/register",
            headers={"x-forwarded-for": "198.51.100.64"},
            json={"email": f"source-{uuid4().hex[:12]}@example.com", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        token = {"authorization": f"Bearer {registered.json()['access_token']}"}
        asks = [  # a public route (the edge counts), a guarded one (counted in the guard's round
            ("/api/v1/plans", {}, 200),  # trip) and a refused token (counted on its own)
            ("/api/v1/me", token, 200),
            ("/api/v1/me", {"authorization": "Bearer not.a.token"}, 401),
        ]
        responses, expected = [], []
        for n in range(GLOBAL + 3):
            path, headers, status = asks[n % 3]
            responses.append(client.get(path, headers={**headers, "x-forwarded-for": spelled(network, n)}))
            expected.append(status if n < GLOBAL else 429)
        neighbour = client.get("/api/v1/plans", headers={"x-forwarded-for": "2001:db8:64:2::1"})
    assert [r.status_code for r in responses] == expected, server.log()
    assert [remaining(r, "global") for r in responses[:GLOBAL]] == list(range(GLOBAL - 1, -1, -1))
    assert all(r.json()["error"] == "RateLimited" for r in responses[GLOBAL:])
    assert neighbour.status_code == 200 and remaining(neighbour, "global") == GLOBAL - 1  # the next /64


def test_one_64_has_one_auth_budget(server):
    network = "2001:db8:64:3::/64"
    email = f"nobody-{uuid4().hex[:12]}@example.com"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        responses = [
            client.post(
                "/api/v1/auth/login",
                headers={"x-forwarded-for": spelled(network, n)},
                json={"email": email, "password": "not the password"},
            )
            for n in range(AUTH + 2)
        ]
        neighbour = client.post(
            "/api/v1/auth/login",
            headers={"x-forwarded-for": "2001:db8:64:4::1"},
            json={"email": email, "password": "not the password"},
        )
    assert [r.status_code for r in responses] == [401] * AUTH + [429] * 2, server.log()
    assert [remaining(r, "auth") for r in responses[:AUTH]] == list(range(AUTH - 1, -1, -1))
    assert all(remaining(r, "auth") == 0 for r in responses[AUTH:])  # refused by auth, not global
    assert neighbour.status_code == 401 and remaining(neighbour, "auth") == AUTH - 1
