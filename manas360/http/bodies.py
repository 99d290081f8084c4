"""JSON request bodies: read as an object (content type, depth and NUL checks), then
validated against a pydantic model (422 with `fields`)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
import pydantic

from manas360 import errors
from manas360.http.sanic_types import AppRequest

Model = TypeVar("Model", bound=pydantic.BaseModel)

MAX_JSON_DEPTH = 32
"""Objects and arrays nested deeper than this are refused (400) before any model sees them."""
_NUL_ESCAPE = b"\\u0000"  # JSON can carry NUL only as this escape (raw control bytes are invalid)
NUL_ALLOWED_KEYS = frozenset({"password", "current_password", "new_password"})
"""Keys whose string values may hold NUL: secrets that are only ever hashed, never stored
or passed on as text (a password may contain any character)."""


def read_json_object(request: AppRequest) -> dict[str, Any]:
    """The body as a JSON object; 400 for a wrong content type, bad JSON, a non-object or
    nesting deeper than MAX_JSON_DEPTH; 422 for a NUL character in any key or string
    (except the values of NUL_ALLOWED_KEYS)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise errors.BadRequest("Content-Type must be application/json")
    raw = request.body or b""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.BadRequest("Body is not valid JSON") from None
    if not isinstance(body, dict):
        raise errors.BadRequest("Body must be a JSON object")
    # Both checks walk the document only when the raw bytes say they might fail.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH or _NUL_ESCAPE in raw:
        _check_json_document(body)
    return body


def _check_json_document(body: dict[str, Any]) -> None:
    # PostgreSQL text cannot hold NUL (asyncpg would fail the query: a 500), and deep
    # nesting only costs recursion somewhere downstream; refuse both at the edge.
    pending: list[tuple[Any, int, str]] = [(body, 1, "")]
    while pending:
        value, depth, where = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise errors.BadRequest(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            path = f"{where}.{key}" if where else str(key)
            nul_key = isinstance(key, str) and "\x00" in key
            if nul_key or (isinstance(item, str) and "\x00" in item and key not in NUL_ALLOWED_KEYS):
                raise errors.ValidationError({path: "Must not contain NUL characters"})
            if isinstance(item, (dict, list)):
                pending.append((item, depth + 1, path))


def parse_body(request: AppRequest, model: type[Model]) -> Model:
    """Validate the JSON object body against `model`; 422 with `fields` when it does not fit."""
    return validate(model, read_json_object(request))


def validate(model: type[Model], data: dict[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        fields: dict[str, str] = {}
        for problem in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in problem["loc"]) or "body"
            fields.setdefault(where, problem["msg"])
        raise errors.ValidationError(fields) from None
