"""/api/v1/auth/mfa: TOTP setup, confirmation, the login's second step, and turning it off."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic_ext import openapi
from sanic_ext.extensions.openapi.definitions import Response

from manas360.blueprints.bodies import StrictBody
from manas360.blueprints.guard import BEARER, authenticated, client
from manas360.edge import rate_limited
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.responses import json_response
from manas360.services import mfa

bp = Blueprint("mfa", url_prefix="/auth")

# A 6-digit TOTP code or a recovery code (`xxxx-xxxx-xxxx-xxxx`); spaces and dashes are ignored.
Code = Annotated[str, Field(min_length=1, max_length=64)]


class CodeBody(StrictBody):
    code: Code


class VerifyBody(StrictBody):
    mfa_token: str = Field(min_length=1, max_length=128)
    code: Code


class TotpSetup(BaseModel):
    secret: str = Field(description="base32 TOTP secret (SHA-1, 6 digits, 30 s), for manual entry")
    otpauth_uri: str = Field(description="`otpauth://totp/...` URI for a QR code")


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="ten single-use codes, shown only this once")


def _ok(model: type[BaseModel], description: str) -> Response:
    return Response({"application/json": model.model_json_schema()}, status=200, description=description)


@bp.post("/mfa/totp/setup")
@openapi.definition(
    summary="Start TOTP setup",
    description="Creates a new TOTP secret for the caller, pending until confirmed (calling again replaces a "
                "pending one). 409 `MfaAlreadyEnabled` when MFA is already on.",
    tag="auth", secured=BEARER, response=[_ok(TotpSetup, "The pending secret and its otpauth URI")])
@authenticated()
async def setup(request: Request) -> HTTPResponse:
    enrolment = await mfa.setup(box=deps(request).secret_box, user_id=request.ctx.principal.user_id,
                                client=client(request))
    return json_response(TotpSetup(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri).model_dump())


@bp.post("/mfa/totp/confirm")
@openapi.definition(
    summary="Confirm TOTP setup",
    description="Turns MFA on with a current code of the pending secret and returns ten recovery codes, each "
                "usable once instead of a TOTP code. 401 `InvalidCredentials` for a wrong code.",
    tag="auth", secured=BEARER, body={"application/json": CodeBody.model_json_schema()},
    response=[_ok(RecoveryCodes, "MFA is on; the recovery codes")])
@authenticated()
async def confirm(request: Request) -> HTTPResponse:
    body, app = parse_body(request, CodeBody), deps(request)
    codes = await mfa.confirm(box=app.secret_box, clock=app.clock, user_id=request.ctx.principal.user_id,
                              code=body.code, client=client(request))
    return json_response(RecoveryCodes(recovery_codes=codes).model_dump())


@bp.post("/mfa/verify")
@openapi.definition(
    summary="Complete a login with a second factor",
    description="With MFA on, a login with the right password answers 403 `MfaRequired` with an `mfa_token` "
                "(single use, valid 300 s). Send it with a current TOTP code (each accepted once) or an unused "
                "recovery code for the token pair of a new session. 401 `InvalidCredentials` for a wrong code "
                "(counted toward the account's lockout like a failed login; 423 `AccountLocked` once locked), "
                "401 `InvalidToken` for an unknown, expired or used `mfa_token`.",
    tag="auth", body={"application/json": VerifyBody.model_json_schema()})
@rate_limited("auth")
async def verify(request: Request) -> HTTPResponse:
    body, app = parse_body(request, VerifyBody), deps(request)
    pair = await mfa.verify(settings=app.settings, store=app.store, codec=app.codec, clock=app.clock,
                            box=app.secret_box, mfa_token=body.mfa_token, code=body.code, client=client(request))
    return json_response(pair.as_dict())


@bp.delete("/mfa/totp")
@openapi.definition(
    summary="Turn MFA off",
    description="Needs a current TOTP code or an unused recovery code (401 `InvalidCredentials` otherwise, "
                "counted toward the account's lockout). Removes the secret and the recovery codes.",
    tag="auth", secured=BEARER, body={"application/json": CodeBody.model_json_schema()})
@authenticated()
async def disable(request: Request) -> HTTPResponse:
    body, app = parse_body(request, CodeBody), deps(request)
    await mfa.disable(settings=app.settings, store=app.store, box=app.secret_box, clock=app.clock,
                      user_id=request.ctx.principal.user_id, code=body.code, client=client(request))
    return HTTPResponse(status=204)
