"""Paginated lists' query parameters: `limit` and an opaque `cursor` (manas360.cursors)."""

from __future__ import annotations

import re
from typing import Any, overload

import pydantic

from manas360.http.bodies import Model, validate
from manas360.http.sanic_types import AppRequest

DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT = 20, 100
MAX_CURSOR_CHARS = 512
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
"""A cursor's alphabet: URL-safe base64 without padding (manas360.cursors)."""
_PAGE_LIMIT_TEXT = re.compile(r"^[0-9]{1,6}$")


class Page(pydantic.BaseModel):
    """Query parameters of a paginated list: `limit` 1..100 (default 20), an opaque `cursor`."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    limit: int = pydantic.Field(
        DEFAULT_PAGE_LIMIT,
        ge=1,
        le=MAX_PAGE_LIMIT,
        description=f"Page size, 1..{MAX_PAGE_LIMIT} (default {DEFAULT_PAGE_LIMIT})",
    )
    cursor: str | None = pydantic.Field(
        None,
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page",
    )

    @pydantic.field_validator("limit", mode="before")
    @classmethod
    def _plain_digits(cls, value: Any) -> Any:
        # pydantic alone would take "5_0", " 5 " or "5.0"; a query parameter is digits.
        if isinstance(value, str) and not _PAGE_LIMIT_TEXT.match(value):
            raise ValueError(f"Must be an integer from 1 to {MAX_PAGE_LIMIT}")
        return value


@overload
def parse_page(request: AppRequest) -> Page: ...
@overload
def parse_page(request: AppRequest, model: type[Model]) -> Model: ...
def parse_page(request: AppRequest, model: type[pydantic.BaseModel] = Page) -> pydantic.BaseModel:
    """A list's query parameters (`limit`, `cursor` and the model's filters); 422 with
    `fields` when out of range. Unknown parameters are ignored."""
    args = request.args
    return validate(model, {name: args.get(name) for name in model.model_fields if name in args})
