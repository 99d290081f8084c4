"""/api/v1/me: the caller's own profile."""

from __future__ import annotations

from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.blueprints.bodies import DisplayName, StrictBody
from manas360.blueprints.guard import authenticated
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import Me, User, user_fields
from manas360.services.accounts import users

bp = Blueprint("me", url_prefix="/me")


class ProfileBody(StrictBody):
    display_name: DisplayName


@bp.get("")
@operation(
    id="me_get",
    tag="me",
    secured=True,
    responses={200: Me},
    errors={404: ("NotFound",)},
    summary="Who am I",
    description="The caller's account with the permissions of their role, the features of "
    "their plan and their subscription (`free` when none is active).",
)
@authenticated()
async def show(request: AppRequest) -> HTTPResponse:
    profile = await users.get_profile(
        db=deps(request).db, user_id=request.ctx.principal.user_id, catalog=request.ctx.access.catalog
    )
    return model_response(
        Me.model_validate(
            {
                **user_fields(profile.user),
                "permissions": profile.permissions,
                "features": profile.features,
                "subscription": profile.subscription,
            }
        )
    )


@bp.patch("")
@operation(
    id="me_update",
    tag="me",
    secured=True,
    body=ProfileBody,
    responses={200: User},
    errors={404: ("NotFound",)},
    summary="Change my display name",
    description="Only `display_name` may be sent; any other field is refused with 422.",
)
@authenticated()
async def update(request: AppRequest) -> HTTPResponse:
    body = parse_body(request, ProfileBody)
    user = await users.update_display_name(
        db=deps(request).db, user_id=request.ctx.principal.user_id, display_name=body.display_name
    )
    return model_response(User.model_validate(user, from_attributes=True))
