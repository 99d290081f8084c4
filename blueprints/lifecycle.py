"""/api/v1/me and /api/v1/auth: the account's life: deleting it (and the mailed cancel)."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.blueprints.bodies import Code, Password, StrictBody
from manas360.blueprints.guard import authenticated, client
from manas360.clock import iso
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import DeletionScheduled, TokenPair
from manas360.services.accounts import deletion

bp = Blueprint("lifecycle", url_prefix="/me")
auth_bp = Blueprint("lifecycle_auth", url_prefix="/auth")


class DeletionCancelBody(StrictBody):
    token: str = Field(
        min_length=1, max_length=deletion.MAX_TOKEN_CHARS, description="The token from the link in the deletion mail"
    )
    password: Password
    code: Code | None = Field(None, description="With MFA on: a TOTP or recovery code")


@bp.delete("")
@operation(
    id="me_delete",
    tag="me",
    secured=True,
    responses={202: DeletionScheduled},
    errors={403: ("ReauthenticationRequired",), 404: ("NotFound",)},
    summary="Delete my account",
    description="Step-up (a credential within `REAUTH_MAX_AGE_S`, `aal` 2 with MFA on; else 403 "
    "`ReauthenticationRequired` and nothing changes). The account becomes `pending_deletion`: every session "
    "and access token is revoked at once, and every request of it answers 403 `AccountPendingDeletion` "
    "until the deletion is cancelled with the link mailed to the owner (POST "
    "/auth/account-deletion/cancel) or, at `deletion_at`, `manas360 maintenance purge-deleted` erases it.",
)
@authenticated()
async def delete_me(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    deletion_at = await deletion.request_deletion(
        db=app.db, settings=app.settings, store=app.store, principal=request.ctx.principal, client=client(request)
    )
    return model_response(DeletionScheduled.model_validate({"deletion_at": iso(deletion_at)}), status=202)


@auth_bp.post("/account-deletion/cancel")
@operation(
    id="auth_account_deletion_cancel",
    tag="auth",
    body=DeletionCancelBody,
    responses={200: TokenPair},
    errors={
        401: ("InvalidToken", "InvalidCredentials"),
        403: ("AccountDisabled", "EmailNotVerified", "MfaRequired"),
        423: ("AccountLocked",),
    },
    summary="Cancel my account's deletion",
    description="With the token from the deletion mail and the account's password (with MFA on also `code`, "
    "else 403 `MfaRequired` and nothing changes): the account gets back the status it had, and the "
    "caller a new session. Passes the same gate as a login: a wrong password or code counts toward the "
    "lockout (401 `InvalidCredentials`, then 423). 401 `InvalidToken` for an unknown link, one of an "
    "account already purged or past its grace, and for a deletion an administrator scheduled (only an "
    "administrator cancels that). Under the `auth` rate limit.",
)
async def cancel_deletion(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, DeletionCancelBody), deps(request)
    pair = await deletion.cancel_by_owner(
        db=app.db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        clock=app.clock,
        box=app.secret_box,
        token=body.token,
        password=body.password,
        code=body.code,
        client=client(request),
    )
    return model_response(TokenPair.model_validate(pair, from_attributes=True))
