"""/api/v1/me: the caller's own profile."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic_ext import openapi

from manas360.blueprints.bodies import DisplayName, StrictBody
from manas360.blueprints.guard import BEARER, authenticated
from manas360.http.bodies import parse_body
from manas360.http.responses import json_response
from manas360.services import users

bp = Blueprint("me", url_prefix="/me")


class ProfileBody(StrictBody):
    display_name: DisplayName


@bp.get("")
@openapi.definition(summary="Who am I",
                    description="The caller's account with the permissions of their role, the features of "
                                "their plan and their subscription (`free` when none is active).",
                    tag="me", secured=BEARER)
@authenticated()
async def show(request: Request) -> HTTPResponse:
    profile = await users.get_profile(user_id=request.ctx.principal.user_id)
    return json_response(profile.as_dict())


@bp.patch("")
@openapi.definition(summary="Change my display name",
                    description="Only `display_name` may be sent; any other field is refused with 422.",
                    tag="me", body={"application/json": ProfileBody.model_json_schema()}, secured=BEARER)
@authenticated()
async def update(request: Request) -> HTTPResponse:
    body = parse_body(request, ProfileBody)
    user = await users.update_display_name(user_id=request.ctx.principal.user_id, display_name=body.display_name)
    return json_response(user.as_dict())
