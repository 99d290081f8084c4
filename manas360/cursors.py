"""Opaque pagination cursors: a JSON position, base64url-encoded. One codec, and one page
shape (`Listing`), for every list."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from manas360 import errors


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a list: its items and the cursor of the next page (None on the last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor}


def encode_cursor(position: Any) -> str:
    """An opaque, URL-safe cursor for a JSON-serialisable position (e.g. [created_at, id])."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> Any:
    """The position inside a cursor from `encode_cursor`; 422 on anything else."""
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:  # binascii.Error and orjson.JSONDecodeError are both ValueErrors
        raise errors.ValidationError({"cursor": "Invalid cursor"}) from None


def decode_position(cursor: str, *, arity: int) -> list[Any]:
    """A list position of exactly `arity` values; 422 for anything we did not produce."""
    position = decode_cursor(cursor)
    if not isinstance(position, list) or len(position) != arity:
        raise errors.ValidationError({"cursor": "Invalid cursor"})
    return position
