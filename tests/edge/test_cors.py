"""CORS through sanic-ext: only ALLOWED_ORIGINS, preflight answered, credentials only for
listed origins, and nothing at all for an origin that is not listed."""

from __future__ import annotations

import pytest

from manas360.settings import SettingsError, load_settings
from tests.edge.conftest import fresh_ip
from tests.fixtures.app import client_for

ALLOWED = "https://app.example"
OTHER_ALLOWED = "https://admin.example:8443"


@pytest.fixture(scope="module")
async def app(edge_app):
    async with edge_app(ALLOWED_ORIGINS=f"{ALLOWED}, {OTHER_ALLOWED}") as app:
        yield app


@pytest.fixture
async def client(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        yield client


def cors_headers(response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "authorization, content-type",
    }


@pytest.mark.parametrize("origin", [ALLOWED, OTHER_ALLOWED])
async def test_a_listed_origin_gets_cors_headers_with_credentials(client, origin):
    response = await client.get("/probe/ping", headers={"origin": origin})
    assert response.status_code == 200
    headers = cors_headers(response)
    assert headers["access-control-allow-origin"] == origin
    assert headers["access-control-allow-credentials"] == "true"
    exposed = set(headers["access-control-expose-headers"].split(","))
    assert {"ratelimit", "ratelimit-policy", "retry-after", "x-request-id"} <= exposed
    assert response.headers["vary"].lower() == "origin"


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.example.evil.example",  # suffix
        "https://evil.example/https://app.example",
        "http://app.example",  # other scheme
        "https://app.example:8443",  # other port
        "https://app.exampl",  # prefix
        "null",
    ],
)
async def test_an_origin_not_listed_gets_no_cors_header_at_all(client, origin):
    response = await client.get("/probe/ping", headers={"origin": origin})
    assert response.status_code == 200
    assert cors_headers(response) == {}
    response = await client.options("/probe/echo", headers=preflight(origin))
    assert cors_headers(response) == {}


async def test_no_origin_no_cors_headers(client):
    assert cors_headers(await client.get("/probe/ping")) == {}


async def test_a_preflight_from_a_listed_origin_is_answered(client):
    response = await client.options("/probe/echo", headers=preflight(ALLOWED))
    assert response.status_code == 204
    headers = cors_headers(response)
    assert headers["access-control-allow-origin"] == ALLOWED
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-allow-methods"] == "POST"  # the route's methods only
    assert set(headers["access-control-allow-headers"].split(",")) == {"authorization", "content-type"}
    assert headers["access-control-max-age"] == "600"


async def test_a_preflight_asking_for_an_unlisted_header_is_not_granted_it(client):
    response = await client.options(
        "/probe/echo", headers={**preflight(ALLOWED), "access-control-request-headers": "x-evil"}
    )
    assert "access-control-allow-headers" not in response.headers


async def test_errors_carry_cors_headers_for_listed_origins(client):
    response = await client.get("/no/such/route", headers={"origin": ALLOWED})
    assert response.status_code == 404
    assert response.headers["access-control-allow-origin"] == ALLOWED


async def test_without_allowed_origins_nobody_gets_cors_headers(edge_app):
    async with edge_app() as app, client_for(app, client_ip=fresh_ip()) as client:
        assert cors_headers(await client.get("/probe/ping", headers={"origin": ALLOWED})) == {}
        assert cors_headers(await client.options("/probe/echo", headers=preflight(ALLOWED))) == {}


async def test_a_wildcard_outside_production_never_grants_credentials(edge_app):
    async with edge_app(ALLOWED_ORIGINS="*") as app, client_for(app, client_ip=fresh_ip()) as client:
        headers = cors_headers(await client.get("/probe/ping", headers={"origin": "https://any.example"}))
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers


@pytest.mark.parametrize("origin", ["https://app.example/", "https://app.example/path", "app.example", "https://"])
def test_an_allowed_origin_must_be_scheme_host_port(origin):
    with pytest.raises(SettingsError, match="ALLOWED_ORIGINS"):
        load_settings({"ALLOWED_ORIGINS": origin})
