"""/api/v1/auth: password reset and email verification (links sent by mail).

Requests for a link answer 202 `{}` whatever the address, in the same time, so the answer
never tells whether an account exists; the link arrives by mail (manas360.services.mail).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic_ext import openapi
from sanic_ext.extensions.openapi.definitions import Response

from manas360.blueprints.bodies import Email, NewPassword, StrictBody
from manas360.blueprints.guard import BEARER, authenticated, client
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.responses import json_response
from manas360.services import recovery, verification
from manas360.services.account_tokens import MAX_TOKEN_CHARS

bp = Blueprint("recovery", url_prefix="/auth")

Token = Field(min_length=1, max_length=MAX_TOKEN_CHARS, description="the token from the link in the mail")


class PasswordResetBody(StrictBody):
    email: Email


class PasswordResetConfirmBody(StrictBody):
    token: str = Token
    new_password: NewPassword


class VerifyEmailBody(StrictBody):
    token: str = Token


class Accepted(BaseModel):
    """`{}`: the request is taken; what follows arrives by mail."""

    model_config = ConfigDict(extra="forbid")


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: str
    privilege_level: int
    plan: str
    created_at: str
    status: str
    email_verified: bool
    mfa_enabled: bool


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: UserOut


def _ok(model: type[BaseModel], status: int, description: str) -> Response:
    return Response({"application/json": model.model_json_schema()}, status=status, description=description)


def _accepted() -> HTTPResponse:
    return json_response(Accepted().model_dump(), status=202)


@bp.post("/password-reset")
@openapi.definition(
    summary="Ask for a password-reset link",
    description="Mails a single-use link (`{PUBLIC_BASE_URL}/reset-password?token=…`, valid "
                "PASSWORD_RESET_TTL_S) to the address if it belongs to an active account, voiding older reset links. "
                "The answer is the same 202 `{}`, in the same time, for unknown addresses. Nothing else changes: the "
                "current password keeps working until the reset is confirmed. Under the `auth` rate limit.",
    tag="auth", body={"application/json": PasswordResetBody.model_json_schema()},
    response=[_ok(Accepted, 202, "Taken (whether or not the address has an account)")])
async def request_password_reset(request: Request) -> HTTPResponse:
    body, app = parse_body(request, PasswordResetBody), deps(request)
    await recovery.request_reset(settings=app.settings, email=body.email, client=client(request))
    return _accepted()


@bp.post("/password-reset/confirm")
@openapi.definition(
    summary="Set a new password with a reset token",
    description="Uses up the token, sets the password, lifts any lockout, revokes every session and returns the "
                "token pair of a new one. 401 `InvalidToken` for an unknown, expired or already used token; of two "
                "concurrent confirms of one token exactly one succeeds. Under the `auth` rate limit.",
    tag="auth", body={"application/json": PasswordResetConfirmBody.model_json_schema()},
    response=[_ok(TokenPairOut, 200, "The pair of a new session, the only live one")])
async def confirm_password_reset(request: Request) -> HTTPResponse:
    body, app = parse_body(request, PasswordResetConfirmBody), deps(request)
    pair = await recovery.confirm_reset(settings=app.settings, store=app.store, codec=app.codec, clock=app.clock,
                                        token=body.token, new_password=body.new_password, client=client(request))
    return json_response(TokenPairOut.model_validate(pair.as_dict()).model_dump())


@bp.post("/verify-email")
@openapi.definition(
    summary="Confirm an email address",
    description="Uses up the verification token mailed at registration (or by a resend) and marks the address "
                "verified. 401 `InvalidToken` for an unknown, expired or already used token.",
    tag="auth", body={"application/json": VerifyEmailBody.model_json_schema()},
    response=[_ok(UserOut, 200, "The user, with `email_verified: true`")])
async def verify_email(request: Request) -> HTTPResponse:
    body = parse_body(request, VerifyEmailBody)
    user = await verification.verify(token=body.token, client=client(request))
    return json_response(UserOut.model_validate(user.as_dict()).model_dump())


@bp.post("/verify-email/resend")
@openapi.definition(
    summary="Mail a new verification link",
    description="Voids the caller's older verification links and mails a new one; an address already verified "
                "gets the same 202 and no mail. Under the `auth` rate limit.",
    tag="auth", secured=BEARER, response=[_ok(Accepted, 202, "Taken")])
@authenticated()
async def resend_verification(request: Request) -> HTTPResponse:
    app = deps(request)
    await verification.resend(settings=app.settings, principal=request.ctx.principal, client=client(request))
    return _accepted()
