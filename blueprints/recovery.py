"""/api/v1/auth: password reset and email verification (links sent by mail).

Requests for a link answer 202 `{}` whatever the address, in the same time, so the answer
never tells whether an account exists; the link arrives by mail (manas360.services.mail.messages).
"""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.blueprints.bodies import Code, NewEmail, NewPassword, StrictBody
from manas360.blueprints.guard import authenticated, client
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import Accepted, TokenPair, User
from manas360.services.accounts import verification
from manas360.services.accounts.account_tokens import MAX_TOKEN_CHARS
from manas360.services.auth import reset

bp = Blueprint("recovery", url_prefix="/auth")


class PasswordResetBody(StrictBody):
    email: NewEmail


class PasswordResetConfirmBody(StrictBody):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS, description="The token from the link in the mail")
    new_password: NewPassword
    code: Code | None = Field(
        None, description="With MFA on: a TOTP or recovery code (the link alone is not a second factor)"
    )


class ResendBody(StrictBody):
    email: NewEmail


class VerifyEmailBody(StrictBody):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS, description="The token from the link in the mail")


def _accepted() -> HTTPResponse:
    return model_response(Accepted(), status=202)


@bp.post("/password-reset")
@operation(
    id="auth_password_reset",
    tag="auth",
    body=PasswordResetBody,
    responses={202: Accepted},
    summary="Ask for a password-reset link",
    description="Mails a single-use link (`{PUBLIC_BASE_URL}/reset-password#token=…`, valid "
    "PASSWORD_RESET_TTL_S) to the address if it belongs to an active account. Up to 3 links are live at "
    "once (a newer request drops the oldest beyond, never the others) and up to MAIL_PER_ACCOUNT_HOURLY "
    "reset mails go to an account per hour. The answer is the same 202 `{}`, in the same time, for "
    "unknown addresses and beyond the allowance; a malformed address is 422. Nothing else changes: the "
    "current password keeps working until the reset is confirmed. Under the `auth` rate limit.",
)
async def request_password_reset(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, PasswordResetBody), deps(request)
    await reset.request_reset(db=deps(request).db, settings=app.settings, email=body.email, client=client(request))
    return _accepted()


@bp.post("/password-reset/confirm")
@operation(
    id="auth_password_reset_confirm",
    tag="auth",
    body=PasswordResetConfirmBody,
    responses={200: TokenPair},
    errors={
        401: ("InvalidToken", "InvalidCredentials"),
        403: ("AccountDisabled", "AccountPendingDeletion", "MfaRequired"),
        423: ("AccountLocked",),
    },
    summary="Set a new password with a reset token",
    description="A reset link proves the mailbox, never a second factor: with MFA on (and the address verified) "
    "the confirm also needs `code`, a TOTP or recovery code; without it 403 `MfaRequired` and nothing "
    "changes (the link stays usable); a wrong one is 401 `InvalidCredentials`, counted like a failed "
    "login (the link stays usable); with the source or account locked, 423. With MFA off the confirm "
    "works under any lock. Uses up the token, sets the password, lifts every lock, revokes every "
    "session, voids every other one-time link, mails the owner, and returns the token pair of a new "
    "session, the only live one (`amr` [email], plus otp with a code; `aal` 1). On an address never "
    "verified it is the first proof of the mailbox: it is marked verified and a TOTP set up before is "
    "removed. A new password that is common, contains the service's name or the email's local part is 422 "
    "(`fields.password` says which; the link stays usable). 401 `InvalidToken` for an unknown, expired, "
    "used or voided token; of two concurrent "
    "confirms of one token exactly one succeeds. Under the `auth` rate limit.",
)
async def confirm_password_reset(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, PasswordResetConfirmBody), deps(request)
    pair = await reset.confirm_reset(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        clock=app.clock,
        box=app.secret_box,
        token=body.token,
        new_password=body.new_password,
        code=body.code,
        client=client(request),
    )
    return model_response(TokenPair.model_validate(pair, from_attributes=True))


@bp.post("/verify-email")
@operation(
    id="auth_verify_email",
    tag="auth",
    body=VerifyEmailBody,
    responses={200: User},
    errors={401: ("InvalidToken",)},
    summary="Confirm an email address",
    description="Uses up the verification token mailed at registration (or by a resend) and marks the address "
    "verified: the answer is the user with `email_verified: true`; no session is issued. The first "
    "proof of an address also removes what was set up before it (a TOTP secret, recovery codes, every "
    "session), so an account someone registered with another person's address cannot be kept armed. "
    "401 `InvalidToken` for an unknown, expired, used or voided token.",
)
async def verify_email(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, VerifyEmailBody), deps(request)
    user = await verification.verify(
        db=deps(request).db, settings=app.settings, store=app.store, token=body.token, client=client(request)
    )
    return model_response(User.model_validate(user, from_attributes=True))


@bp.post("/verify-email/resend")
@operation(
    id="auth_verify_email_resend",
    tag="auth",
    secured=True,
    body=ResendBody,
    responses={202: Accepted},
    summary="Mail a new verification link",
    description="With a bearer token: a new link for the caller (the body is ignored). Without one (an unverified "
    "account has no session when REQUIRE_VERIFIED_EMAIL is on): `{email}`, and a link goes to it if it "
    "belongs to an active, unverified account; the answer is the same 202, in the same time, for unknown, "
    "verified and other addresses. Up to 3 links are live per account and MAIL_PER_ACCOUNT_HOURLY "
    "verification mails go to it per hour; beyond, still 202 and nothing is sent. Under the `auth` rate "
    "limit.",
)
async def resend_verification(request: AppRequest) -> HTTPResponse:
    if request.headers.get("authorization") is not None:
        return await _resend_to_caller(request)
    body, app = parse_body(request, ResendBody), deps(request)
    await verification.resend_to(db=deps(request).db, settings=app.settings, email=body.email, client=client(request))
    return _accepted()


@authenticated()
async def _resend_to_caller(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    await verification.resend(db=app.db, settings=app.settings, principal=request.ctx.principal, client=client(request))
    return _accepted()
