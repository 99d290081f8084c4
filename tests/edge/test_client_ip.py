"""The address a request is counted under: the socket peer, never what an untrusted client
writes in X-Forwarded-For; behind TRUSTED_PROXIES the client the proxies name; IPv6 by /64."""

from __future__ import annotations

import pytest

from tests.edge.conftest import fresh_ip
from tests.fixtures.app import client_for

LIMIT = 3
PROXY = "10.1.2.3"


@pytest.fixture(scope="module")
async def app(edge_app):
    async with edge_app(RATE_LIMIT_GLOBAL=f"{LIMIT}/3600", TRUSTED_PROXIES="10.0.0.0/8") as app:
        yield app


async def _statuses(client, n: int, **kwargs) -> list[int]:
    return [(await client.get("/probe/ping", **kwargs)).status_code for _ in range(n)]


async def test_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(app):
    peer = fresh_ip()
    async with client_for(app, client_ip=peer) as client:
        who = (await client.get("/probe/whoami", headers={"x-forwarded-for": "203.0.113.9"})).json()
        assert who["client_ip"] == peer
        statuses = [
            (await client.get("/probe/ping", headers={"x-forwarded-for": fresh_ip()})).status_code for _ in range(LIMIT)
        ]
    assert statuses == [200] * (LIMIT - 1) + [429]
    async with client_for(app, client_ip=PROXY) as proxy:  # the same address, through a trusted proxy
        assert await _statuses(proxy, 1, headers={"x-forwarded-for": peer}) == [429]


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(app):
    first, second = fresh_ip(), fresh_ip()
    async with client_for(app, client_ip=PROXY) as proxy:
        # The right-most untrusted hop counts: what the client itself prepended is ignored.
        chain = {"x-forwarded-for": f"203.0.113.66, {first}, 10.9.9.9"}
        assert await _statuses(proxy, LIMIT + 1, headers=chain) == [200] * LIMIT + [429]
        assert await _statuses(proxy, 1, headers={"x-forwarded-for": second}) == [200]
        who = (await proxy.get("/probe/whoami", headers={"x-forwarded-for": f"{second}, 10.0.0.7"})).json()
    assert who["client_ip"] == second and who["peer"] == PROXY


async def test_several_forwarded_for_lines_are_read_as_one_list(app):
    client_address = fresh_ip()
    async with client_for(app, client_ip=PROXY) as proxy:
        response = await proxy.get(
            "/probe/whoami", headers=[("x-forwarded-for", client_address), ("x-forwarded-for", "10.0.0.8")]
        )
    assert response.json()["client_ip"] == client_address


async def test_sanic_itself_believes_no_forwarding_header(app):
    peer = fresh_ip()
    spoofed = {"x-forwarded-for": "203.0.113.1", "x-real-ip": "203.0.113.2", "forwarded": "for=203.0.113.3;secret=x"}
    async with client_for(app, client_ip=peer) as client:
        who = (await client.get("/probe/whoami", headers=spoofed)).json()
    assert who == {"client_ip": peer, "peer": peer, "sanic_remote_addr": "", "sanic_client_ip": peer}


async def test_ipv6_clients_share_the_budget_of_their_64(app):
    subnet = int(fresh_ip().split(".")[-1]) * 2
    statuses = []
    for host in range(LIMIT + 1):  # rotating addresses inside one /64
        async with client_for(app, client_ip=f"2001:db8:0:{subnet:x}:{host:x}::1") as client:
            statuses += await _statuses(client, 1)
    assert statuses == [200] * LIMIT + [429]
    async with client_for(app, client_ip=f"2001:db8:0:{subnet + 1:x}::1") as neighbour:  # the next /64
        assert await _statuses(neighbour, 1) == [200]


async def test_the_ipv6_prefix_setting_sets_how_wide_one_client_is(edge_app):
    """RATE_LIMIT_IPV6_PREFIX=56: the /64s of one /56 are one client; the next /56 is another."""
    async with edge_app(RATE_LIMIT_GLOBAL=f"{LIMIT}/3600", RATE_LIMIT_IPV6_PREFIX="56") as app:  # its own counters
        statuses = []
        for subnet in range(LIMIT + 1):  # a different /64 of 2001:db8:1:ab00::/56 each time
            async with client_for(app, client_ip=f"2001:db8:1:ab{subnet:02x}::1") as client:
                statuses += await _statuses(client, 1)
        assert statuses == [200] * LIMIT + [429]
        async with client_for(app, client_ip="2001:db8:1:ac00::1") as neighbour:  # the next /56
            assert await _statuses(neighbour, 1) == [200]
