"""/account: the self-service account page, and the landing paths of the mailed links.

One HTML page (manas360/account_ui/index.html) answers /account and each landing path
(`/reset-password`, `/verify-email`, `/confirm-email`, `/cancel-email-change`,
`/cancel-deletion`: `{PUBLIC_BASE_URL}/<path>#token=...`); its script reads the path and the
fragment (which browsers never send here) and calls the public API like any other client.
Its own files are served from /account/<name> out of an allow-list. No CDN, no build step;
the response hook gives these paths their own Content-Security-Policy (only these files)
and `Cache-Control: no-store` (manas360.http.hooks.ACCOUNT_CSP).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sanic import Blueprint
from sanic.response import HTTPResponse

import manas360
from manas360.errors import NotFound
from manas360.http.hooks import ACCOUNT_PAGES
from manas360.http.sanic_types import AppRequest

bp = Blueprint("account")

PAGE_DIR = Path(manas360.__file__).resolve().parent / "account_ui"
PAGE = PAGE_DIR / "index.html"
# Only these files: an allow-list, so no path reaches the disk.
FILES: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
_cache: dict[str, bytes] = {}


async def _read(path: Path) -> bytes:
    """The file's bytes, read once per worker (in a thread: no disk wait on the event loop)."""
    key = str(path)
    if key not in _cache:
        _cache[key] = await asyncio.to_thread(path.read_bytes)
    return _cache[key]


async def page(request: AppRequest) -> HTTPResponse:
    return HTTPResponse(await _read(PAGE), content_type="text/html; charset=utf-8")


for _path in sorted(ACCOUNT_PAGES):
    bp.add_route(page, _path, methods=["GET"], name="page" + _path.replace("/", "_").replace("-", "_"))


@bp.get("/account/<name:str>")
async def asset(request: AppRequest, name: str) -> HTTPResponse:
    if name not in FILES:
        raise NotFound()
    return HTTPResponse(await _read(PAGE_DIR / name), content_type=FILES[name])
