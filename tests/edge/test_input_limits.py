"""Bad input of every kind is a 4xx in the envelope, never a 500: header counts, NUL bytes,
deep or odd JSON, over-long values, and pagination parameters out of range. (Limits that
only Sanic's own server enforces, body and head size and slow clients, are tested against
a real server in test_server.py.)"""

from __future__ import annotations

import pytest

from manas360 import errors
from manas360.cursors import decode_cursor, encode_cursor
from manas360.edge.limits import MAX_HEADER_FIELDS
from manas360.http.bodies import MAX_JSON_DEPTH
from tests.edge.conftest import fresh_ip
from tests.fixtures.app import client_for

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
async def app(edge_app):
    async with edge_app() as app:
        yield app


@pytest.fixture
async def client(app):
    async with client_for(app, client_ip=fresh_ip()) as client:
        yield client


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["request_id"] == response.headers["x-request-id"]
    return body


def _nested(depth: int) -> bytes:
    """An object whose innermost value sits `depth` containers deep (objects and arrays)."""
    inner = b"1"
    for level in range(depth - 1):
        inner = b"[" + inner + b"]" if level % 2 else b'{"k": ' + inner + b"}"
    return b'{"a": ' + inner + b"}"


# headers ------------------------------------------------------------------------------------


async def test_too_many_header_fields_is_431(client):
    # httpx adds host, accept, accept-encoding, connection and user-agent.
    ok = await client.get("/probe/ping", headers={f"x-h{i}": "v" for i in range(MAX_HEADER_FIELDS - 5)})
    assert ok.status_code == 200
    response = await client.get("/probe/ping", headers={f"x-h{i}": "v" for i in range(MAX_HEADER_FIELDS - 4)})
    assert_error(response, 431, "RequestHeaderFieldsTooLarge")


# NUL bytes ---------------------------------------------------------------------------------


async def test_nul_in_the_query_string_is_400(client):
    assert_error(await client.get("/probe/page?cursor=ab%00cd"), 400, "BadRequest")


async def test_nul_in_a_path_segment_is_404(client):
    assert_error(await client.get("/probe/users/a%00b"), 404, "NotFound")


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"name": "a\\u0000b"}', "name"),
        (b'{"name": "ok", "tags": ["fine", "bad\\u0000"]}', "tags.1"),
        (b'{"outer": {"inner\\u0000key": 1}}', "outer.inner\x00key"),
    ],
)
async def test_nul_in_a_json_string_or_key_is_422_naming_it(client, body, field):
    response = assert_error(await client.post("/probe/json", content=body, headers=JSON), 422, "ValidationError")
    assert list(response["fields"]) == [field]


async def test_an_escaped_backslash_before_u0000_is_not_a_nul(client):
    response = await client.post("/probe/json", content=b'{"name": "\\\\u0000"}', headers=JSON)
    assert response.status_code == 200


async def test_a_password_may_hold_nul(client):
    # Passwords are only ever hashed: any character is allowed (the auth suite relies on it).
    response = await client.post("/probe/echo", content=b'{"name": "x", "password": "a\\u0000b"}', headers=JSON)
    assert response.status_code == 200 and response.json()["password"] == "a\x00b"


# JSON shape ----------------------------------------------------------------------------------


async def test_nesting_up_to_the_cap_is_accepted(client):
    response = await client.post("/probe/json", content=_nested(MAX_JSON_DEPTH), headers=JSON)
    assert response.status_code == 200


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 5000])
async def test_deeper_nesting_is_400(client, depth):
    response = await client.post("/probe/json", content=_nested(depth), headers=JSON)
    assert_error(response, 400, "BadRequest")


async def test_many_shallow_containers_are_fine(client):
    body = b'{"items": [' + b",".join(b'{"a": [1]}' for _ in range(2000)) + b"]}"
    assert (await client.post("/probe/json", content=body, headers=JSON)).status_code == 200


@pytest.mark.parametrize("body", [b"[]", b"null", b"42", b'"text"', b"{", b"{}{}", b"\xef\xbb\xbf{}", b"NaN"])
async def test_anything_but_one_json_object_is_400(client, body):
    assert_error(await client.post("/probe/json", content=body, headers=JSON), 400, "BadRequest")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
async def test_json_with_the_wrong_content_type_is_400(client, content_type):
    response = await client.post("/probe/json", content=b"{}", headers={"content-type": content_type})
    assert_error(response, 400, "BadRequest")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x" * 60_000},
        {"name": 12},
        {"name": None},
        {"name": ["x"]},
        {"name": {"$gt": ""}},
        {},
    ],
)
async def test_over_long_or_mistyped_values_are_422_with_fields(client, body):
    response = assert_error(await client.post("/probe/echo", json=body), 422, "ValidationError")
    assert "name" in response["fields"]


# pagination -----------------------------------------------------------------------------------


async def test_pagination_defaults_and_bounds(client):
    assert (await client.get("/probe/page")).json() == {"limit": 20, "cursor": None}
    assert (await client.get("/probe/page?limit=1")).json()["limit"] == 1
    assert (await client.get("/probe/page?limit=100")).json()["limit"] == 100


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=101",
        "limit=99999999999999999999999999",
        "limit=" + "9" * 5000,
        "limit=1e3",
        "limit=5_0",
        "limit=%205",
        "limit=abc",
        "limit=1.5",
        "limit=0x10",
        "limit=%D9%A1",
    ],
)
async def test_an_out_of_range_or_malformed_limit_is_422(client, query):
    response = assert_error(await client.get(f"/probe/page?{query}"), 422, "ValidationError")
    assert list(response["fields"]) == ["limit"]


@pytest.mark.parametrize("cursor", ["a" * 513, "not/base64", "x y", "%FF"])
async def test_a_malformed_cursor_is_422(client, cursor):
    response = assert_error(await client.get("/probe/page", params={"cursor": cursor}), 422, "ValidationError")
    assert list(response["fields"]) == ["cursor"]


def test_cursors_round_trip_and_garbage_is_a_validation_error():
    position = ["2026-11-25T18:00:00+00:00", "0b4c5d6e-0000-4000-8000-000000000000"]
    cursor = encode_cursor(position)
    assert cursor.replace("-", "").replace("_", "").isalnum()
    assert decode_cursor(cursor) == position
    for garbage in ("abc", "a", "____"):
        with pytest.raises(errors.ValidationError):
            decode_cursor(garbage)
