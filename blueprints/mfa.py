"""/api/v1/auth/mfa: TOTP setup, confirmation, the login's second step, turning it off, and
new recovery codes. Setup, confirm, disable and new recovery codes are step-up operations."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.blueprints.bodies import Code, StrictBody
from manas360.blueprints.guard import authenticated, client
from manas360.edge import rate_limited
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import RecoveryCodes, TokenPair, TotpSetup
from manas360.services.auth import mfa_enrolment as mfa
from manas360.services.auth import mfa_verify

bp = Blueprint("mfa", url_prefix="/auth")

_WRONG_CODE = {401: ("InvalidCredentials",)}
_STEP_UP = ("ReauthenticationRequired",)
_STEP_UP_TEXT = (
    "A step-up operation: the token's `auth_time` must be within REAUTH_MAX_AGE_S, with `aal` 2 when "
    "MFA is on; otherwise 403 `ReauthenticationRequired` (POST /auth/reauthenticate) and nothing changes."
)


class CodeBody(StrictBody):
    code: Code


class VerifyBody(StrictBody):
    mfa_token: str = Field(min_length=1, max_length=128)
    code: Code


@bp.post("/mfa/totp/setup")
@operation(
    id="auth_mfa_setup",
    tag="auth",
    secured=True,
    responses={200: TotpSetup},
    errors={403: _STEP_UP, 409: ("MfaAlreadyEnabled",)},
    summary="Start TOTP setup",
    description="Creates a new TOTP secret for the caller, pending until confirmed (calling again replaces a "
    "pending one), with its otpauth:// URI and that URI as a QR code (`qr_svg`). 409 "
    f"`MfaAlreadyEnabled` when MFA is already on. {_STEP_UP_TEXT}",
)
@authenticated()
async def setup(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    enrolment = await mfa.setup(
        db=app.db, settings=app.settings, box=app.secret_box, principal=request.ctx.principal, client=client(request)
    )
    return model_response(
        TotpSetup(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg)
    )


@bp.post("/mfa/totp/confirm")
@operation(
    id="auth_mfa_confirm",
    tag="auth",
    secured=True,
    body=CodeBody,
    responses={200: RecoveryCodes},
    errors={**_WRONG_CODE, 403: _STEP_UP, 409: ("MfaAlreadyEnabled",)},
    summary="Confirm TOTP setup",
    description="Turns MFA on with a current code of the pending secret and returns ten recovery codes, each "
    "usable once instead of a TOTP code. 401 `InvalidCredentials` for a wrong code. Every other "
    "session of the account is signed out and the owner is mailed. " + _STEP_UP_TEXT,
)
@authenticated()
async def confirm(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, CodeBody), deps(request)
    codes = await mfa.confirm(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        box=app.secret_box,
        clock=app.clock,
        principal=request.ctx.principal,
        code=body.code,
        client=client(request),
    )
    return model_response(RecoveryCodes(recovery_codes=codes))


@bp.post("/mfa/verify")
@operation(
    id="auth_mfa_verify",
    tag="auth",
    body=VerifyBody,
    responses={200: TokenPair},
    errors={
        401: ("InvalidCredentials", "InvalidToken"),
        403: ("AccountDisabled", "AccountPendingDeletion", "EmailNotVerified"),
        423: ("AccountLocked",),
    },
    summary="Complete a login with a second factor",
    description="With MFA on, a login with the right password answers 403 `MfaRequired` with an `mfa_token` "
    "(single use, valid 300 s). Send it with a current TOTP code (each accepted once) or an unused "
    'recovery code for the token pair of a new session (`amr` `["pwd","otp","mfa"]`, `aal` 2). '
    "401 `InvalidCredentials` for a wrong code (counted toward the account's lockout like a failed "
    "login; 423 `AccountLocked` once locked), 401 `InvalidToken` for an unknown, expired or used "
    "`mfa_token`, or one that met 3 wrong codes or a security event of the account.",
)
@rate_limited("auth")
async def verify(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, VerifyBody), deps(request)
    pair = await mfa_verify.verify(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        clock=app.clock,
        box=app.secret_box,
        mfa_token=body.mfa_token,
        code=body.code,
        client=client(request),
    )
    return model_response(TokenPair.model_validate(pair, from_attributes=True))


@bp.delete("/mfa/totp")
@operation(
    id="auth_mfa_disable",
    tag="auth",
    secured=True,
    body=CodeBody,
    responses={204: None},
    errors={**_WRONG_CODE, 403: _STEP_UP, 423: ("AccountLocked",)},
    summary="Turn MFA off",
    description="Needs a current TOTP code or an unused recovery code (401 `InvalidCredentials` otherwise, "
    "counted toward the account's lockout; 423 `AccountLocked` once locked). Removes the secret and "
    "the recovery codes, signs every other session out and mails the owner. " + _STEP_UP_TEXT,
)
@authenticated()
async def disable(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, CodeBody), deps(request)
    await mfa.disable(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        box=app.secret_box,
        clock=app.clock,
        principal=request.ctx.principal,
        code=body.code,
        client=client(request),
    )
    return HTTPResponse(status=204)


@bp.post("/mfa/recovery-codes")
@operation(
    id="auth_mfa_recovery_codes",
    tag="auth",
    secured=True,
    body=CodeBody,
    responses={200: RecoveryCodes},
    errors={**_WRONG_CODE, 403: _STEP_UP, 423: ("AccountLocked",)},
    summary="Make new recovery codes",
    description="Needs a current TOTP code (401 `InvalidCredentials` otherwise, counted). Returns ten new "
    "recovery codes; the old ones stop working, every other session is signed out and the owner is "
    "mailed. " + _STEP_UP_TEXT,
)
@authenticated()
async def recovery_codes(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, CodeBody), deps(request)
    codes = await mfa.regenerate_recovery_codes(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        box=app.secret_box,
        clock=app.clock,
        principal=request.ctx.principal,
        code=body.code,
        client=client(request),
    )
    return model_response(RecoveryCodes(recovery_codes=codes))
