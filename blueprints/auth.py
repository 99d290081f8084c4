"""/api/v1/auth: register, login, refresh, logout, logout-all, password, reauthenticate, sessions.

Bodies refuse unknown fields (422): a `role`, `privilege_level` or `plan` sent by a
client never reaches a service, let alone the database.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field, model_validator
from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.blueprints.bodies import (
    Code,
    DisplayName,
    Email,
    NewEmail,
    NewPassword,
    Password,
    SessionPath,
    StrictBody,
)
from manas360.blueprints.guard import authenticated, client
from manas360.errors import NotFound
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import Registration, Session, SessionList, TokenPair, VerificationRequired, user_fields
from manas360.services.auth import (
    login,
    passkey_login,
    password_change,
    reauthenticate,
    refresh,
    register,
    sessions,
    signout,
)

bp = Blueprint("auth", url_prefix="/auth")
_TOKEN_PAIR = "A token pair: `access_token`, `refresh_token`, `token_type`, `expires_in` and `user`."
_PAIR = {200: TokenPair}


class RegisterBody(StrictBody):
    email: NewEmail
    password: NewPassword
    display_name: DisplayName = ""


class LoginBody(StrictBody):
    email: Email
    password: Password


class RefreshBody(StrictBody):
    refresh_token: str = Field(min_length=1, max_length=512)


class PasswordBody(StrictBody):
    current_password: Password
    new_password: NewPassword
    code: Code | None = Field(
        None, description="With MFA on: a TOTP or recovery code, unless the token has `aal` 2 and a fresh `auth_time`"
    )


class ReauthenticateBody(StrictBody):
    """Either `{password, code?}` or a passkey assertion `{challenge_id, credential}`."""

    password: Password | None = None
    code: Code | None = Field(
        None, description="A TOTP or recovery code: the new token has `aal` 2 (required with MFA on)"
    )
    challenge_id: str | None = Field(
        None, min_length=1, max_length=128, description="From POST /auth/passkeys/reauthenticate/options"
    )
    credential: dict[str, Any] | None = Field(
        None, description="`AuthenticationResponseJSON` of one of the caller's passkeys (with `challenge_id`)"
    )

    @model_validator(mode="after")
    def _one_form(self) -> ReauthenticateBody:
        passkey = self.challenge_id is not None or self.credential is not None
        if passkey and (self.password is not None or self.code is not None):
            raise ValueError("send either password (and code) or challenge_id and credential, not both")
        if passkey and (self.challenge_id is None or self.credential is None):
            raise ValueError("a passkey re-authentication needs both challenge_id and credential")
        if not passkey and self.password is None:
            raise ValueError("password (or a passkey's challenge_id and credential) is required")
        return self


@bp.post("/register")
@operation(
    id="auth_register",
    tag="auth",
    body=RegisterBody,
    responses={201: Registration},
    errors={409: ("EmailTaken",)},
    summary="Create an account",
    description="Opens an account with role `user` on the free plan, mails a link to verify the address, and "
    "signs it in. Emails are NFKC-normalised, trimmed and lower-cased, and must be ASCII; passwords "
    "are 10 to 128 characters and neither a common password, nor containing the service's name or the "
    "email's local part (4+ characters): 422 with `fields.password` saying which. Unknown fields are "
    "refused with 422. 409 `EmailTaken` when the address "
    f"is in use. {_TOKEN_PAIR} With REQUIRE_VERIFIED_EMAIL on, no session is opened until the address "
    "is verified: the answer is `{user, verification_required: true}` with no tokens.",
)
async def sign_up(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, RegisterBody), deps(request)
    done = await register.register(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        clock=app.clock,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        client=client(request),
    )
    if done.pair is None:
        answer = Registration(
            VerificationRequired.model_validate({"user": user_fields(done.user), "verification_required": True})
        )
    else:
        answer = Registration(TokenPair.model_validate(done.pair, from_attributes=True))
    return model_response(answer, status=201)


@bp.post("/login")
@operation(
    id="auth_login",
    tag="auth",
    body=LoginBody,
    responses=_PAIR,
    errors={
        401: ("InvalidCredentials",),
        403: ("AccountDisabled", "AccountPendingDeletion", "EmailNotVerified", "MfaRequired"),
        423: ("AccountLocked",),
    },
    summary="Sign in with email and password",
    description="Opens a new session. A wrong password and an unknown email get the same 401 "
    "`InvalidCredentials`. Five failures within 15 minutes lock the address for 15 minutes: "
    "423 `AccountLocked` with `retry_after`, even with the right password. A disabled account's "
    "right password gets 403 `AccountDisabled` and no tokens. With MFA on, the right password gets 403 "
    "`MfaRequired` with an `mfa_token` (single use, 300 s) and no tokens: POST /auth/mfa/verify completes "
    "the login. With REQUIRE_VERIFIED_EMAIL, an unverified address's right password gets 403 "
    f'`EmailNotVerified` and no tokens. The access token carries `auth_time`, `amr` ["pwd"] and `aal` '
    f"1. {_TOKEN_PAIR}",
)
async def sign_in(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, LoginBody), deps(request)
    pair = await login.login(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        clock=app.clock,
        email=body.email,
        password=body.password,
        client=client(request),
    )
    return model_response(TokenPair.model_validate(pair, from_attributes=True))


@bp.post("/refresh")
@operation(
    id="auth_refresh",
    tag="auth",
    body=RefreshBody,
    responses=_PAIR,
    errors={
        401: ("InvalidToken", "TokenReuseDetected", "TokenRevoked"),
        403: ("AccountDisabled", "AccountPendingDeletion", "EmailNotVerified"),
    },
    summary="Trade a refresh token for a new pair",
    description="Refresh tokens are single use: each call returns a successor. Presenting the same token "
    "again within the reuse grace returns the same successor; any later reuse revokes the whole "
    "session, mails the owner and answers 401 `TokenReuseDetected`. The new access token keeps the "
    "session's `auth_time` and `amr`; `aal` 2 lasts AAL2_MAX_AGE_S after `auth_time`, then 1. A "
    "session ends SESSION_MAX_AGE_S after its login whatever the refreshes (401 `InvalidToken`). With "
    "REQUIRE_VERIFIED_EMAIL, an unverified account's refresh is 403 `EmailNotVerified`. "
    f"{_TOKEN_PAIR}",
)
async def rotate(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, RefreshBody), deps(request)
    pair = await refresh.refresh(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        clock=app.clock,
        refresh_token=body.refresh_token,
        client=client(request),
    )
    return model_response(TokenPair.model_validate(pair, from_attributes=True))


@bp.post("/logout")
@operation(
    id="auth_logout",
    tag="auth",
    secured=True,
    responses={204: None},
    summary="Sign out of this session",
    description="Revokes the caller's session: its access and refresh tokens stop working at once.",
)
@authenticated()
async def logout(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    await signout.logout(
        db=app.db, settings=app.settings, store=app.store, principal=request.ctx.principal, client=client(request)
    )
    return HTTPResponse(status=204)


@bp.post("/logout-all")
@operation(
    id="auth_logout_all",
    tag="auth",
    secured=True,
    responses={204: None},
    summary="Sign out everywhere",
    description="Revokes every session of the caller, on every device, at once, and voids every "
    "outstanding password-reset, verification and MFA sign-in link of the account.",
)
@authenticated()
async def logout_all(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    await signout.logout_all(
        db=app.db, settings=app.settings, store=app.store, principal=request.ctx.principal, client=client(request)
    )
    return HTTPResponse(status=204)


@bp.post("/password")
@operation(
    id="auth_change_password",
    tag="auth",
    body=PasswordBody,
    responses=_PAIR,
    secured=True,
    errors={401: ("InvalidCredentials",), 403: ("ReauthenticationRequired",), 423: ("AccountLocked",)},
    summary="Change the password",
    description="Needs the current password (401 `InvalidCredentials` otherwise); a wrong one counts toward "
    "the account's lockout like a failed login (423 `AccountLocked` once locked, even with the right "
    "one). With MFA on it also needs `code` (a TOTP or recovery code, counted the same way) unless the "
    "token has `aal` 2 and a fresh `auth_time`; otherwise 403 `ReauthenticationRequired` and nothing "
    "changes. Revokes every session, this one included, voids every outstanding one-time link, mails "
    "the owner, and returns the pair of a new session, the only live one. A new password that is common, "
    "contains the service's name or the email's local part is 422 (`fields.password` says which), checked "
    f"before the current one (no lockout attempt spent). {_TOKEN_PAIR}",
)
@authenticated()
async def change_password(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, PasswordBody), deps(request)
    pair = await password_change.change_password(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        clock=app.clock,
        box=app.secret_box,
        principal=request.ctx.principal,
        current_password=body.current_password,
        new_password=body.new_password,
        code=body.code,
        client=client(request),
    )
    return model_response(TokenPair.model_validate(pair, from_attributes=True))


@bp.post("/reauthenticate")
@operation(
    id="auth_reauthenticate",
    tag="auth",
    body=ReauthenticateBody,
    responses=_PAIR,
    secured=True,
    errors={
        401: ("InvalidCredentials", "InvalidToken"),
        403: ("MfaRequired", "AccountDisabled", "EmailNotVerified"),
        423: ("AccountLocked",),
    },
    summary="Prove it is you again (step-up)",
    description="Sensitive changes (MFA setup, confirm and disable, new recovery codes, adding or removing a "
    "passkey) need a credential presented within REAUTH_MAX_AGE_S and, with MFA on, `aal` 2; otherwise they answer 403 "
    "`ReauthenticationRequired`. This takes the password, and a TOTP or recovery `code` (required with "
    "MFA on: 403 `MfaRequired` without one), and returns a fresh pair for the same session with a new "
    "`auth_time` (`aal` 2 with a code). Wrong input counts toward the lockout like a failed login. "
    "Instead of the password it takes a passkey assertion `{challenge_id, credential}` (options from POST "
    "/auth/passkeys/reauthenticate/options): `aal` 2 when the authenticator verified the user (with MFA on, "
    "one that did not is 403 `MfaRequired`); a passkey that does not verify is 401 `InvalidCredentials`, "
    "counted toward no lockout, and a dead challenge 401 `InvalidToken`. "
    f"Under the `auth` rate limit. {_TOKEN_PAIR}",
)
@authenticated()
async def step_up(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, ReauthenticateBody), deps(request)
    if body.challenge_id is not None and body.credential is not None:
        pair = await passkey_login.reauthenticate_with_passkey(
            db=app.db,
            settings=app.settings,
            store=app.store,
            codec=app.codec,
            clock=app.clock,
            principal=request.ctx.principal,
            challenge_id=body.challenge_id,
            credential=body.credential,
            client=client(request),
        )
        return model_response(TokenPair.model_validate(pair, from_attributes=True))
    assert body.password is not None  # the body's validator
    pair = await reauthenticate.reauthenticate(
        db=deps(request).db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        clock=app.clock,
        box=app.secret_box,
        principal=request.ctx.principal,
        password=body.password,
        code=body.code,
        client=client(request),
    )
    return model_response(TokenPair.model_validate(pair, from_attributes=True))


@bp.get("/sessions")
@operation(
    id="auth_list_sessions",
    tag="auth",
    secured=True,
    responses={200: SessionList},
    summary="List my sessions",
    description="The caller's live sessions, newest first, with `current` marking this one.",
)
@authenticated()
async def list_sessions(request: AppRequest) -> HTTPResponse:
    principal = request.ctx.principal
    items = await sessions.list_sessions(
        db=deps(request).db, user_id=principal.user_id, current_session_id=principal.session_id
    )
    return model_response(SessionList(items=[Session.model_validate(item, from_attributes=True) for item in items]))


@bp.delete("/sessions/<session_id:str>")
@operation(
    id="auth_delete_session",
    tag="auth",
    secured=True,
    path=SessionPath,
    responses={204: None},
    summary="End one of my sessions",
    description="Revokes the session and its tokens. 404 for an unknown id or someone else's.",
)
@authenticated()
async def delete_session(request: AppRequest, session_id: str) -> HTTPResponse:
    app = deps(request)
    await signout.delete_session(
        db=app.db,
        settings=app.settings,
        store=app.store,
        principal=request.ctx.principal,
        session_id=_uuid_or_404(session_id),
        client=client(request),
    )
    return HTTPResponse(status=204)


def _uuid_or_404(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound() from None
