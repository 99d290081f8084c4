"""/api/v1/auth/passkeys: register, list, rename and remove passkeys, and sign in with one.

Registration and removal are step-up operations; POST /login is one more way into an
account (the same gate as a password login), and POST /auth/reauthenticate also takes a
passkey assertion (blueprints/auth.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, Field, StringConstraints
from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.blueprints.bodies import Email, StrictBody
from manas360.blueprints.guard import authenticated, client
from manas360.errors import NotFound
from manas360.http.bodies import parse_body, read_json_object, validate
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import Passkey, PasskeyCeremony, PasskeyList, TokenPair
from manas360.queries.auth.passkeys import Passkey as PasskeyRow
from manas360.services.auth import passkey_login, passkeys

Model = TypeVar("Model", bound=BaseModel)
bp = Blueprint("passkeys", url_prefix="/auth/passkeys")

_STEP_UP_TEXT = (
    "A step-up operation: the token's `auth_time` must be within REAUTH_MAX_AGE_S, with `aal` 2 when "
    "MFA is on; otherwise 403 `ReauthenticationRequired` (POST /auth/reauthenticate) and nothing changes."
)
_CHALLENGE_TEXT = (
    "401 `InvalidToken` for a `challenge_id` that is unknown, expired (300 s), already used, made for another "
    "ceremony or account, or older than the account's latest security event."
)


def _name(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


# Trimmed, 1 to 64 printable characters (the column's width).
PasskeyName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), AfterValidator(_name)
]
ChallengeId = Field(min_length=1, max_length=128, description="From the matching options call")


class PasskeyRegisterOptionsBody(StrictBody):
    name: PasskeyName | None = Field(None, description="The name the new passkey will get (default `Passkey`)")


class PasskeyRegisterBody(StrictBody):
    challenge_id: str = ChallengeId
    credential: dict[str, Any] = Field(
        description="`RegistrationResponseJSON`: what `navigator.credentials.create()` returned, as "
        "`PublicKeyCredential.toJSON()` gives it (binary fields base64url)"
    )
    name: PasskeyName | None = Field(None, description="Overrides the name given to the options")


class PasskeyRenameBody(StrictBody):
    name: PasskeyName = Field(description="A name to tell this passkey from the others")


class PasskeyLoginOptionsBody(StrictBody):
    email: Email | None = Field(
        None, description="Ask for this account's passkeys; without it, the authenticator offers its own (discoverable)"
    )


class PasskeyLoginBody(StrictBody):
    challenge_id: str = ChallengeId
    credential: dict[str, Any] = Field(
        description="`AuthenticationResponseJSON`: what `navigator.credentials.get()` returned, as "
        "`PublicKeyCredential.toJSON()` gives it (binary fields base64url)"
    )


class PasskeyPath(BaseModel):
    passkey_id: str = Field(description="One of the caller's passkey ids (UUID), as GET /auth/passkeys lists them")


def _render(passkey: PasskeyRow) -> Passkey:
    return Passkey.model_validate(passkey._asdict())


def _ceremony(ceremony: passkeys.Ceremony) -> HTTPResponse:
    return model_response(PasskeyCeremony(challenge_id=ceremony.challenge_id, options=ceremony.options))


@bp.post("/register/options")
@operation(
    id="auth_passkey_register_options",
    tag="passkeys",
    secured=True,
    body=PasskeyRegisterOptionsBody,
    responses={200: PasskeyCeremony},
    errors={403: ("ReauthenticationRequired", "EmailNotVerified"), 409: ("PasskeyLimitReached",)},
    summary="Start adding a passkey",
    description="The options for `navigator.credentials.create()`: a discoverable credential and user "
    "verification preferred, the caller's passkeys excluded (an authenticator that holds one says so "
    "instead of making a second), attestation `none`. 403 `EmailNotVerified` until the account's email "
    f"is verified; 409 `PasskeyLimitReached` at 10 passkeys. {_STEP_UP_TEXT}",
)
@authenticated()
async def register_options(request: AppRequest) -> HTTPResponse:
    body, app = _optional_body(request, PasskeyRegisterOptionsBody), deps(request)
    ceremony = await passkeys.register_options(
        db=app.db, settings=app.settings, principal=request.ctx.principal, name=body.name, client=client(request)
    )
    return _ceremony(ceremony)


@bp.post("/register")
@operation(
    id="auth_passkey_register",
    tag="passkeys",
    secured=True,
    body=PasskeyRegisterBody,
    responses={201: Passkey},
    errors={
        401: ("InvalidCredentials", "InvalidToken"),
        403: ("ReauthenticationRequired", "EmailNotVerified"),
        409: ("PasskeyLimitReached",),
    },
    summary="Finish adding a passkey",
    description="Verifies the authenticator's answer (challenge, origin among WEBAUTHN_ORIGINS, RP ID "
    "WEBAUTHN_RP_ID, user presence, the public key) and keeps the passkey; the owner is mailed. 401 "
    f"`InvalidCredentials` when it does not verify or the credential is registered already. {_CHALLENGE_TEXT} "
    f"409 `PasskeyLimitReached` at 10 passkeys. {_STEP_UP_TEXT}",
)
@authenticated()
async def register(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, PasskeyRegisterBody), deps(request)
    passkey = await passkeys.register(
        db=app.db,
        settings=app.settings,
        principal=request.ctx.principal,
        challenge_id=body.challenge_id,
        credential=body.credential,
        name=body.name,
        client=client(request),
    )
    return model_response(_render(passkey), status=201)


@bp.get("")
@operation(
    id="auth_passkey_list",
    tag="passkeys",
    secured=True,
    responses={200: PasskeyList},
    summary="List my passkeys",
    description="The caller's passkeys, oldest first.",
)
@authenticated()
async def list_passkeys(request: AppRequest) -> HTTPResponse:
    items = await passkeys.list_passkeys(db=deps(request).db, principal=request.ctx.principal)
    return model_response(PasskeyList(items=[_render(item) for item in items]))


@bp.patch("/<passkey_id:str>")
@operation(
    id="auth_passkey_rename",
    tag="passkeys",
    secured=True,
    path=PasskeyPath,
    body=PasskeyRenameBody,
    responses={200: Passkey},
    errors={404: ("NotFound",)},
    summary="Rename a passkey",
    description="404 for an unknown id or someone else's passkey.",
)
@authenticated()
async def rename(request: AppRequest, passkey_id: str) -> HTTPResponse:
    body = parse_body(request, PasskeyRenameBody)
    passkey = await passkeys.rename(
        db=deps(request).db,
        principal=request.ctx.principal,
        passkey_id=_uuid_or_404(passkey_id),
        name=body.name,
        client=client(request),
    )
    return model_response(_render(passkey))


@bp.delete("/<passkey_id:str>")
@operation(
    id="auth_passkey_remove",
    tag="passkeys",
    secured=True,
    path=PasskeyPath,
    responses={204: None},
    errors={403: ("ReauthenticationRequired",), 404: ("NotFound",)},
    summary="Remove a passkey",
    description="A security event: every other session of the account is signed out, every outstanding "
    "one-time link and passkey challenge voided, and the owner mailed. 404 for an unknown id or someone "
    f"else's passkey. {_STEP_UP_TEXT}",
)
@authenticated()
async def remove(request: AppRequest, passkey_id: str) -> HTTPResponse:
    app = deps(request)
    await passkeys.remove(
        db=app.db,
        settings=app.settings,
        store=app.store,
        principal=request.ctx.principal,
        passkey_id=_uuid_or_404(passkey_id),
        client=client(request),
    )
    return HTTPResponse(status=204)


@bp.post("/login/options")
@operation(
    id="auth_passkey_login_options",
    tag="passkeys",
    body=PasskeyLoginOptionsBody,
    responses={200: PasskeyCeremony},
    errors={429: ("RateLimited",)},
    summary="Start signing in with a passkey",
    description="The options for `navigator.credentials.get()`, user verification preferred. Without "
    "`email`, `allowCredentials` is empty: the authenticator offers the passkeys it holds for this site "
    "(discoverable credentials, conditional UI). With `email`, it lists that account's passkeys; an "
    "unknown address, or one without passkeys, gets 1 to 3 ids that look the same (the same ones every "
    "time) after the same work, so the answer tells nothing about the account. Under the "
    "`passkey_options` rate limit (60 per 15 minutes per client address).",
)
async def login_options(request: AppRequest) -> HTTPResponse:
    body, app = _optional_body(request, PasskeyLoginOptionsBody), deps(request)
    return _ceremony(await passkeys.login_options(db=app.db, settings=app.settings, email=body.email))


@bp.post("/login")
@operation(
    id="auth_passkey_login",
    tag="passkeys",
    body=PasskeyLoginBody,
    responses={200: TokenPair},
    errors={
        401: ("InvalidCredentials", "InvalidToken"),
        403: ("AccountDisabled", "EmailNotVerified", "MfaRequired"),
        423: ("AccountLocked",),
    },
    summary="Sign in with a passkey",
    description="Verifies the assertion against the passkey it names (challenge, origin, RP ID, user "
    "presence, signature, a signature counter that moved forward: one that went back is refused and "
    'audited) and opens a new session. When the authenticator verified the user, `amr` is ["hwk","user",'
    '"mfa"] and `aal` 2: a complete login even with MFA on, and no lockout refuses it. When it did not, '
    '`amr` is ["hwk"] and `aal` 1, a first factor: with MFA on the answer is 403 `MfaRequired` with an '
    "`mfa_token` for POST /auth/mfa/verify, and a locked source or account is refused (423). 401 "
    "`InvalidCredentials` when the assertion does not verify (counted toward no lockout). "
    f"{_CHALLENGE_TEXT} Disabled accounts and, with REQUIRE_VERIFIED_EMAIL, unverified ones get 403 as for a "
    "password login. Under the `auth` rate limit.",
)
async def login(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, PasskeyLoginBody), deps(request)
    pair = await passkey_login.login(
        db=app.db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        clock=app.clock,
        challenge_id=body.challenge_id,
        credential=body.credential,
        client=client(request),
    )
    return model_response(TokenPair.model_validate(pair, from_attributes=True))


@bp.post("/reauthenticate/options")
@operation(
    id="auth_passkey_reauthenticate_options",
    tag="passkeys",
    secured=True,
    responses={200: PasskeyCeremony},
    summary="Start a step-up with a passkey",
    description="The options for `navigator.credentials.get()` listing the caller's passkeys; send the "
    "answer to POST /auth/reauthenticate as `{challenge_id, credential}`.",
)
@authenticated()
async def reauthenticate_options(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    return _ceremony(
        await passkeys.reauthenticate_options(db=app.db, settings=app.settings, principal=request.ctx.principal)
    )


def _optional_body(request: AppRequest, model: type[Model]) -> Model:
    """A body whose fields are all optional: an empty request body reads as `{}`."""
    return validate(model, read_json_object(request) if request.body else {})


def _uuid_or_404(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound() from None
