"""/docs: the OpenAPI document and Swagger UI, served with no internet access.

The UI's scripts and styles come from the installed `swagger-ui-py` package (Swagger UI 5,
Apache-2.0, its licence beside the files), the page and its start script from
manas360/docs_ui; nothing is fetched from a CDN. The document is built once per worker from
the route table (manas360.http.openapi) and equals the committed docs/openapi.json (a test keeps
them equal).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import swagger_ui
from sanic import Blueprint
from sanic.response import HTTPResponse

import manas360
from manas360.errors import NotFound
from manas360.http.openapi import build_document, render
from manas360.http.sanic_types import AppRequest

bp = Blueprint("docs", url_prefix="/docs")

PAGE_DIR = Path(manas360.__file__).resolve().parent / "docs_ui"
SWAGGER_DIR = Path(swagger_ui.__file__).resolve().parent / "static"
# Only the files the page loads (plus the licence): an allow-list, so no path reaches the disk.
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui.css": (SWAGGER_DIR / "swagger-ui.css", "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": (SWAGGER_DIR / "swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui-standalone-preset.js": (
        SWAGGER_DIR / "swagger-ui-standalone-preset.js",
        "text/javascript; charset=utf-8",
    ),
    "favicon-32x32.png": (SWAGGER_DIR / "favicon-32x32.png", "image/png"),
    "LICENSE": (SWAGGER_DIR / "LICENSE", "text/plain; charset=utf-8"),
    "init.js": (PAGE_DIR / "init.js", "text/javascript; charset=utf-8"),
}
_cache: dict[str, bytes] = {}


async def _read(path: Path) -> bytes:
    """The file's bytes, read once per worker (in a thread: no disk wait on the event loop)."""
    key = str(path)
    if key not in _cache:
        _cache[key] = await asyncio.to_thread(path.read_bytes)
    return _cache[key]


@bp.get("")
async def page(request: AppRequest) -> HTTPResponse:
    return HTTPResponse(await _read(PAGE_DIR / "index.html"), content_type="text/html; charset=utf-8")


@bp.get("/openapi.json")
async def document(request: AppRequest) -> HTTPResponse:
    body = getattr(request.app.ctx, "openapi_document", None)
    if body is None:
        body = request.app.ctx.openapi_document = render(build_document(request.app))
    return HTTPResponse(body, content_type="application/json")


@bp.get("/assets/<name:str>")
async def asset(request: AppRequest, name: str) -> HTTPResponse:
    if name not in ASSETS:
        raise NotFound()
    path, content_type = ASSETS[name]
    return HTTPResponse(
        await _read(path), content_type=content_type, headers={"Cache-Control": "public, max-age=86400"}
    )
