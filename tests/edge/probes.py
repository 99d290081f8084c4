"""Test-only routes that exercise the edge: a plain route, routes under the `auth` policy
(one declared by decorator, one listed in a test policy table), the per-user seam, body
parsing, pagination and the resolved client address."""

from __future__ import annotations

import itertools
import os

import pydantic
from sanic import Blueprint, Request

from manas360.edge import apply_verdict, rate_limited, request_client_ip, user_rate_key
from manas360.http.bodies import parse_body, read_json_object
from manas360.http.pagination import parse_page
from manas360.http.responses import json_response
from manas360.store.ratelimit import Verdict, hit

_names = itertools.count()


class Echo(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = pydantic.Field(min_length=1, max_length=10)
    password: str | None = None


async def check_user_rate(request: Request, *, user_id: str, policy: str = "api") -> Verdict:
    """Count a request under the user's policy in its own Redis round trip (the guard folds
    this into its script; the probe exercises the same seam without a token)."""
    rate_policy = request.app.ctx.deps.settings.rate_policies[policy]
    store = request.app.ctx.deps.store
    key, log_key = user_rate_key(store, user_id=user_id, policy=policy)
    verdict = await hit(store, policy=rate_policy.name, key=key, limit=rate_policy.limit, window_s=rate_policy.window_s)
    apply_verdict(request, verdict, log_key=log_key)
    return verdict


def probe_blueprint() -> Blueprint:
    bp = Blueprint(f"edge_probe_{next(_names)}", url_prefix="/probe")

    @bp.get("/ping")
    async def ping(request: Request):
        return json_response({"pid": os.getpid()})

    @bp.post("/login")
    @rate_limited("auth")
    async def login(request: Request):
        return json_response({"ok": True})

    @bp.post("/register")  # under `auth` through the test policy table's `routes`
    async def register(request: Request):
        return json_response({"ok": True})

    @bp.get("/users/<user_id:str>")
    async def user(request: Request, user_id: str):
        await check_user_rate(request, user_id=user_id)
        return json_response({"ok": True})

    @bp.get("/whoami")
    async def whoami(request: Request):
        return json_response(
            {
                "client_ip": request_client_ip(request),
                "peer": request.ip,
                "sanic_remote_addr": request.remote_addr,
                "sanic_client_ip": request.client_ip,
            }
        )

    @bp.post("/echo")
    async def echo(request: Request):
        return json_response(parse_body(request, Echo).model_dump())

    @bp.post("/json")
    async def json_keys(request: Request):
        return json_response({"keys": sorted(read_json_object(request))})

    @bp.get("/page")
    async def page(request: Request):
        return json_response(parse_page(request).model_dump())

    @bp.get("/crash")
    async def crash(request: Request):
        raise RuntimeError("boom")

    return bp


def create_probe_app():
    """Factory for real server processes: the real app plus the probe routes."""
    from manas360.app import create_app

    app = create_app()
    app.blueprint(probe_blueprint())
    return app
