"""JSON responses: a response model (manas360.http.schemas) serialised by pydantic-core,
or, for the few bodies that are not models, orjson."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import orjson
from pydantic import BaseModel
from sanic.helpers import has_message_body as _sanic_has_message_body
from sanic.response import HTTPResponse
from sanic.response.types import HEADER_TRANSLATION_TABLE

JSON = "application/json"
EncodedHeaders = tuple[tuple[bytes, bytes], ...]
has_message_body = cast(Callable[[int], bool], _sanic_has_message_body)  # untyped in Sanic


class ApiResponse(HTTPResponse):
    """A response of this API: besides its `headers`, it sends `constant_headers`, pairs
    encoded once for every response (the security headers the response hook attaches)
    instead of being sanitised and encoded again on each one."""

    constant_headers: EncodedHeaders = ()

    @property
    def processed_headers(self) -> Any:  # (name, value) byte pairs, as Sanic's
        # Sanic's own property, with the same sanitising (CR, LF and NUL removed) done only
        # when a header holds one: str.translate on every name and value was 8 % of a
        # worker's time on the gated GET; three C-level substring checks cost a tenth.
        headers = self.headers
        if has_message_body(self.status):
            headers.setdefault("content-type", self.content_type)
        pairs = [
            (_clean(name).encode("ascii"), _clean(f"{value}").encode(errors="surrogateescape"))
            for name, value in headers.items()
        ]
        pairs += self.constant_headers
        return pairs


def _clean(text: str) -> str:
    if "\r" in text or "\n" in text or "\0" in text:
        return text.translate(HEADER_TRANSLATION_TABLE)
    return text


def model_response(
    model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None, exclude_unset: bool = False
) -> HTTPResponse:
    """`model` as the JSON body (serialised in Rust by pydantic-core, as cheap as orjson)."""
    body = model.__pydantic_serializer__.to_json(model, exclude_unset=exclude_unset)
    return ApiResponse(body, status=status, headers=headers, content_type=JSON)


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    return ApiResponse(orjson.dumps(body), status=status, headers=headers, content_type=JSON)


def encode_headers(headers: dict[str, str]) -> EncodedHeaders:
    """Header pairs as Sanic writes them (checked to need no sanitising: constants only)."""
    encoded = tuple((name.encode("ascii"), value.encode("ascii")) for name, value in headers.items())
    if any(b"\r" in part or b"\n" in part for pair in encoded for part in pair):
        raise ValueError("a constant header holds a line break")
    return encoded
