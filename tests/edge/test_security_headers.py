"""Security headers on every response, errors and refusals included; HSTS when configured;
a docs CSP that admits exactly what the self-served Swagger UI page loads."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from tests.edge.conftest import fresh_ip
from tests.fixtures.accounts import register
from tests.fixtures.app import client_for

HSTS = "max-age=63072000; includeSubDomains"
LIMIT = 3  # ping, not found, crash; then refused


@pytest.fixture(scope="module")
async def app(edge_app):
    async with edge_app(HSTS="1", RATE_LIMIT_GLOBAL=f"{LIMIT}/3600") as app:
        yield app


async def _responses(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        yield "ok", await client.get("/probe/ping")
        yield "not found", await client.get("/no/such/route")
        yield "crash", await client.get("/probe/crash")
        yield (
            "preflight",
            await client.options(
                "/probe/echo", headers={"origin": "https://x.example", "access-control-request-method": "POST"}
            ),
        )
        yield "too many headers", await client.get("/health/live", headers={f"x-h{i}": "1" for i in range(120)})
        yield "rate limited", await client.get("/probe/ping")
        yield "probe", await client.get("/health/live")


async def test_every_response_carries_every_security_header(app):
    seen = []
    async for kind, response in _responses(app):
        seen.append((kind, response.status_code))
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", kind
        assert headers["x-frame-options"] == "DENY", kind
        assert headers["referrer-policy"] == "no-referrer", kind
        assert headers["cross-origin-resource-policy"] == "same-origin", kind
        assert headers["content-security-policy"].startswith("default-src 'none'"), kind
        assert "frame-ancestors 'none'" in headers["content-security-policy"], kind
        assert headers["strict-transport-security"] == HSTS, kind
        assert headers["x-request-id"], kind
        assert "server" not in headers and "x-powered-by" not in headers, kind
    assert [status for _, status in seen] == [200, 404, 500, 204, 431, 429, 200]


async def test_guarded_routes_carry_each_header_once_on_every_outcome(edge_app):
    """The one response hook, on the guard's outcomes (the per-IP limit rides in its round
    trip): success, 401, 403 and the per-IP 429 each carry every header exactly once, and
    a sane client X-Request-ID is echoed."""
    async with edge_app(HSTS="1", RATE_LIMIT_GLOBAL="5/3600") as app, client_for(app, client_ip=fresh_ip()) as client:
        account = await register(client)
        outcomes = [
            await client.get("/api/v1/me", headers={**account.headers, "x-request-id": "trace-me.1"}),
            await client.get("/api/v1/me", headers={"authorization": "Bearer nope"}),
            await client.get("/api/v1/premium/dashboard", headers=account.headers),
            await client.get("/api/v1/me", headers=account.headers),
            await client.get("/api/v1/me", headers=account.headers),
        ]
    assert [r.status_code for r in outcomes] == [200, 401, 403, 200, 429]
    assert outcomes[0].headers["x-request-id"] == "trace-me.1"
    for response in outcomes:
        for name in (
            "x-content-type-options",
            "x-frame-options",
            "referrer-policy",
            "cross-origin-resource-policy",
            "content-security-policy",
            "strict-transport-security",
            "x-request-id",
            "ratelimit",
            "ratelimit-policy",
        ):
            assert len(response.headers.get_list(name)) == 1, (response.status_code, name)
        if response.status_code >= 400:
            assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_the_api_csp_allows_nothing_to_load(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        csp = (await client.get("/probe/ping")).headers["content-security-policy"]
    assert csp == "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            if attrs.get("src"):
                self.scripts.append(attrs["src"])
            else:
                self.inline_scripts += 1
        elif tag == "link" and "stylesheet" in (attrs.get("rel") or ""):
            self.styles.append(attrs["href"])


def _directive(csp: str, name: str) -> list[str]:
    for part in csp.split(";"):
        words = part.split()
        if words and words[0] == name:
            return words[1:]
    return []


def _allowed(url: str, sources: list[str]) -> bool:
    parts = urlsplit(url)
    if not parts.netloc:
        return "'self'" in sources
    return f"{parts.scheme}://{parts.netloc}" in sources or f"{parts.scheme}:" in sources


async def test_the_docs_csp_admits_what_the_docs_page_loads_and_nothing_else(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        response = await client.get("/docs")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    page = _Assets()
    page.feed(response.text)
    assert page.scripts and page.styles, "the page loads Swagger UI"
    assert page.inline_scripts == 0
    for url in page.scripts:
        assert _allowed(url, _directive(csp, "script-src")), (url, csp)
    for url in page.styles:
        assert _allowed(url, _directive(csp, "style-src")), (url, csp)
    # Served from this service alone: no host and no inline script is admitted.
    assert _directive(csp, "script-src") == ["'self'"]
    assert _directive(csp, "style-src") == ["'self'", "'unsafe-inline'"]  # Swagger UI styles its elements inline
    assert "'self'" in _directive(csp, "connect-src")  # the UI fetches /docs/openapi.json
    assert _directive(csp, "frame-ancestors") == ["'none'"]


async def test_the_oauth2_redirect_page_is_not_served(app):
    # sanic-ext would fetch it from a CDN with a blocking call on the event loop, per request.
    async with client_for(app, client_ip=fresh_ip()) as client:
        response = await client.get("/docs/oauth2-redirect.html")
    assert response.status_code == 404 and response.json()["error"] == "NotFound"
