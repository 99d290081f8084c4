"""Every error, from routing to crashes, leaves as the docs/api.md envelope with the request id."""

from __future__ import annotations

import pydantic
import pytest
from sanic import Blueprint

from manas360.http.bodies import parse_body
from manas360.http.responses import json_response
from tests.fixtures.app import client_for, running_app

ENVELOPE_KEYS = {"error", "message", "request_id"}


class Echo(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = pydantic.Field(min_length=1, max_length=10)


def _probe_blueprint() -> Blueprint:
    """Routes that exercise the error machinery itself (body parsing, a crash)."""
    bp = Blueprint("probe", url_prefix="/probe")

    @bp.post("/echo")
    async def echo(request):
        return json_response(parse_body(request, Echo).model_dump())

    @bp.get("/crash")
    async def crash(request):
        raise RuntimeError("secret internal detail /etc/passwd")

    return bp


@pytest.fixture(scope="module")
async def probe_client(settings, database, redis_raw):
    async with running_app(settings, extra_blueprints=(_probe_blueprint(),)) as app, client_for(app) as client:
        yield client


def assert_envelope(response, status: int, code: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert ENVELOPE_KEYS <= set(body), body
    assert body["error"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


async def test_unknown_path_is_404_envelope(probe_client):
    assert_envelope(await probe_client.get("/no/such/path"), 404, "NotFound")


async def test_wrong_method_is_405_envelope_with_allow(probe_client):
    response = await probe_client.delete("/health/live")
    assert_envelope(response, 405, "MethodNotAllowed")
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize(
    "content, headers",
    [
        (b"{not json", {"content-type": "application/json"}),
        (b'{"name": "x"}', {"content-type": "text/plain"}),
        (b'{"name": "x"}', {}),
        (b"[1, 2]", {"content-type": "application/json"}),
        (b'"just a string"', {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
        (b"\xff\xfe", {"content-type": "application/json"}),
    ],
)
async def test_malformed_or_mistyped_bodies_are_400(probe_client, content, headers):
    assert_envelope(await probe_client.post("/probe/echo", content=content, headers=headers), 400, "BadRequest")


async def test_validation_failure_is_422_with_fields(probe_client):
    body = assert_envelope(
        await probe_client.post("/probe/echo", json={"name": "x" * 11, "role": "admin"}), 422, "ValidationError"
    )
    assert set(body["fields"]) == {"name", "role"}


async def test_valid_body_passes(probe_client):
    response = await probe_client.post("/probe/echo", json={"name": "ok"})
    assert response.status_code == 200 and response.json() == {"name": "ok"}


async def test_unhandled_exception_is_500_without_details(probe_client):
    body = assert_envelope(await probe_client.get("/probe/crash"), 500, "InternalError")
    assert "secret" not in body["message"] and "passwd" not in str(body)


async def test_sane_request_id_is_echoed_and_insane_one_replaced(probe_client):
    response = await probe_client.get("/health/live", headers={"x-request-id": "abc-123.def"})
    assert response.headers["x-request-id"] == "abc-123.def"
    response = await probe_client.get("/health/live", headers={"x-request-id": "bad id\twith {stuff}" + "x" * 80})
    rid = response.headers["x-request-id"]
    assert rid != "" and "{" not in rid and len(rid) <= 64


async def test_security_headers_on_success_and_error(probe_client):
    for response in (await probe_client.get("/health/live"), await probe_client.get("/nope")):
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in headers["content-security-policy"]
        assert headers["cross-origin-resource-policy"] == "same-origin"
        assert "strict-transport-security" not in headers
        assert "server" not in headers


async def test_openapi_document_is_served(probe_client):
    response = await probe_client.get("/docs/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "MANAS360 API"
    assert "/health/ready" in document["paths"]
    assert (await probe_client.get("/docs")).status_code in (200, 302)
