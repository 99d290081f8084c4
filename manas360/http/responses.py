"""JSON responses: a response model (manas360.http.schemas) serialised by pydantic-core,
or, for the few bodies that are not models, orjson."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from sanic.response import HTTPResponse

JSON = "application/json"


def model_response(model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None,
                   exclude_unset: bool = False) -> HTTPResponse:
    """`model` as the JSON body (serialised in Rust by pydantic-core, as cheap as orjson)."""
    body = model.__pydantic_serializer__.to_json(model, exclude_unset=exclude_unset)
    return HTTPResponse(body, status=status, headers=headers, content_type=JSON)


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    return HTTPResponse(orjson.dumps(body), status=status, headers=headers, content_type=JSON)
