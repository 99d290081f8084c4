"""/api/v1/auth: password reset and email verification (links sent by mail).

Requests for a link answer 202 `{}` whatever the address, in the same time, so the answer
never tells whether an account exists; the link arrives by mail (manas360.services.mail).
"""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from manas360.blueprints.bodies import Email, NewPassword, StrictBody
from manas360.blueprints.guard import authenticated, client
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import model_response
from manas360.http.schemas import Accepted, TokenPair, User
from manas360.services import recovery, verification
from manas360.services.account_tokens import MAX_TOKEN_CHARS

bp = Blueprint("recovery", url_prefix="/auth")


class PasswordResetBody(StrictBody):
    email: Email


class PasswordResetConfirmBody(StrictBody):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS, description="The token from the link in the mail")
    new_password: NewPassword


class VerifyEmailBody(StrictBody):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS, description="The token from the link in the mail")


def _accepted() -> HTTPResponse:
    return model_response(Accepted(), status=202)


@bp.post("/password-reset")
@operation(
    id="auth_password_reset", tag="auth", body=PasswordResetBody, responses={202: Accepted},
    summary="Ask for a password-reset link",
    description="Mails a single-use link (`{PUBLIC_BASE_URL}/reset-password?token=…`, valid "
                "PASSWORD_RESET_TTL_S) to the address if it belongs to an active account, voiding older reset links. "
                "The answer is the same 202 `{}`, in the same time, for unknown addresses. Nothing else changes: the "
                "current password keeps working until the reset is confirmed. Under the `auth` rate limit.")
async def request_password_reset(request: Request) -> HTTPResponse:
    body, app = parse_body(request, PasswordResetBody), deps(request)
    await recovery.request_reset(settings=app.settings, email=body.email, client=client(request))
    return _accepted()


@bp.post("/password-reset/confirm")
@operation(
    id="auth_password_reset_confirm", tag="auth", body=PasswordResetConfirmBody, responses={200: TokenPair},
    errors={401: ("InvalidToken",)},
    summary="Set a new password with a reset token",
    description="Uses up the token, sets the password, lifts any lockout, revokes every session and returns the "
                "token pair of a new one, the only live one. 401 `InvalidToken` for an unknown, expired or already "
                "used token; of two concurrent confirms of one token exactly one succeeds. Under the `auth` rate "
                "limit.")
async def confirm_password_reset(request: Request) -> HTTPResponse:
    body, app = parse_body(request, PasswordResetConfirmBody), deps(request)
    pair = await recovery.confirm_reset(settings=app.settings, store=app.store, codec=app.codec, clock=app.clock,
                                        token=body.token, new_password=body.new_password, client=client(request))
    return model_response(TokenPair.model_validate(pair, from_attributes=True))


@bp.post("/verify-email")
@operation(
    id="auth_verify_email", tag="auth", body=VerifyEmailBody, responses={200: User},
    errors={401: ("InvalidToken",)},
    summary="Confirm an email address",
    description="Uses up the verification token mailed at registration (or by a resend) and marks the address "
                "verified: the answer is the user with `email_verified: true`. 401 `InvalidToken` for an unknown, "
                "expired or already used token.")
async def verify_email(request: Request) -> HTTPResponse:
    body = parse_body(request, VerifyEmailBody)
    user = await verification.verify(token=body.token, client=client(request))
    return model_response(User.model_validate(user, from_attributes=True))


@bp.post("/verify-email/resend")
@operation(
    id="auth_verify_email_resend", tag="auth", secured=True, responses={202: Accepted},
    summary="Mail a new verification link",
    description="Voids the caller's older verification links and mails a new one; an address already verified "
                "gets the same 202 and no mail. Under the `auth` rate limit.")
@authenticated()
async def resend_verification(request: Request) -> HTTPResponse:
    app = deps(request)
    await verification.resend(settings=app.settings, principal=request.ctx.principal, client=client(request))
    return _accepted()
