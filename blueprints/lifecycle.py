"""/api/v1/me and /api/v1/auth: the account's life: changing its address (and the two mailed
links), deleting it (and the mailed cancel), exporting what is held about it."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360.blueprints.bodies import Code, NewEmail, Password, StrictBody
from manas360.blueprints.guard import authenticated, client
from manas360.clock import iso
from manas360.http.bodies import parse_body
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import json_response, model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import Accepted, DataExport, DeletionScheduled, EmailChangeCancelled, TokenPair, User
from manas360.services.accounts import deletion, email_change, export

bp = Blueprint("lifecycle", url_prefix="/me")
auth_bp = Blueprint("lifecycle_auth", url_prefix="/auth")


class DeletionCancelBody(StrictBody):
    token: str = Field(
        min_length=1, max_length=deletion.MAX_TOKEN_CHARS, description="The token from the link in the deletion mail"
    )
    password: Password
    code: Code | None = Field(None, description="With MFA on: a TOTP or recovery code")


class EmailChangeBody(StrictBody):
    new_email: NewEmail


class LinkTokenBody(StrictBody):
    token: str = Field(
        min_length=1, max_length=email_change.MAX_TOKEN_CHARS, description="The token from the mailed link"
    )


@bp.post("/email")
@operation(
    id="me_change_email",
    tag="me",
    secured=True,
    body=EmailChangeBody,
    responses={202: Accepted},
    errors={403: ("ReauthenticationRequired",), 404: ("NotFound",), 409: ("EmailChangePending",)},
    summary="Change my email address",
    description="Step-up (403 `ReauthenticationRequired` otherwise). 202 `{}` for any well-formed address other "
    "than the current one (422): a confirmation link goes to the new address (valid `EMAIL_CHANGE_TTL_S`; "
    "confirm with POST /auth/email-change/confirm, signed in) and a notice with a cancel link to the current "
    "one (valid `EMAIL_CHANGE_TTL_S` + `EMAIL_CHANGE_REVERT_S`; POST /auth/email-change/cancel). When another "
    "account uses the address, that address gets a mail saying so and nothing else happens; the answer is the "
    "same. At most 3 mails an hour go to one address. A newer request replaces an unconfirmed one. While a "
    "confirmed change can still be reverted: 409 `EmailChangePending`. Under the `auth` rate limit.",
)
@authenticated()
async def change_email(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, EmailChangeBody), deps(request)
    await email_change.request_change(
        db=app.db,
        settings=app.settings,
        principal=request.ctx.principal,
        client=client(request),
        new_email=body.new_email,
    )
    return model_response(Accepted(), status=202)


@auth_bp.post("/email-change/confirm")
@operation(
    id="auth_email_change_confirm",
    tag="auth",
    secured=True,
    body=LinkTokenBody,
    responses={200: User},
    errors={409: ("EmailTaken",)},
    summary="Confirm a new email address",
    description="With the token mailed to the new address, signed in to the same account (a token of another "
    "account, or an unknown, used, expired or voided one, is 401 `InvalidToken`): the account's address "
    "changes and is verified. A security event: every other session is revoked and outstanding one-time links "
    "die; both addresses are told. 409 `EmailTaken` when another account took the address meanwhile (of two "
    "accounts confirming the same address, one gets it). Issues no session. Under the `auth` rate limit.",
)
@authenticated()
async def confirm_email_change(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, LinkTokenBody), deps(request)
    user = await email_change.confirm_change(
        db=app.db,
        settings=app.settings,
        store=app.store,
        principal=request.ctx.principal,
        client=client(request),
        token=body.token,
    )
    return model_response(User.model_validate(user, from_attributes=True))


@auth_bp.post("/email-change/cancel")
@operation(
    id="auth_email_change_cancel",
    tag="auth",
    body=LinkTokenBody,
    responses={200: EmailChangeCancelled},
    errors={401: ("InvalidToken",)},
    summary="Cancel or revert an email change",
    description="With the token from the notice sent to the old address (no security event voids it). Before "
    "the change is confirmed it is void. After, within `EMAIL_CHANGE_REVERT_S`, it is reverted: the old "
    "address comes back (it stayed reserved for the account), every session is revoked, every one-time link "
    "voided, every second factor added since the request removed, a password set since the request made "
    "unusable, and a reset link mailed to the restored address; both addresses are told. 401 `InvalidToken` "
    "for an unknown, used or expired link. Under the `auth` rate limit.",
)
async def cancel_email_change(request: AppRequest) -> HTTPResponse:
    body, app = parse_body(request, LinkTokenBody), deps(request)
    await email_change.cancel_change(
        db=app.db, settings=app.settings, store=app.store, client=client(request), token=body.token
    )
    return model_response(EmailChangeCancelled())


@bp.get("/export")
@operation(
    id="me_export",
    tag="me",
    secured=True,
    responses={200: DataExport},
    errors={403: ("ReauthenticationRequired",), 404: ("NotFound",), 429: ("RateLimited",)},
    summary="Download everything held about me",
    description="Step-up (403 `ReauthenticationRequired` otherwise). A JSON attachment (`Content-Disposition: "
    "attachment`) with every record held about the caller, table by table: profile, role and plan history, "
    "subscriptions, sessions (IP and user agent), passkeys (names, dates), MFA state (never a secret), "
    "login attempts, mails sent (subjects and dates), email changes, audit entries about them (other people "
    "shown by role, never by identity). Never a password hash, token hash or secret. The owner is mailed. At "
    "most 3 per account per 24 hours: 429 `RateLimited` with `retry_after`.",
)
@authenticated()
async def export_me(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    document = await export.export(
        db=app.db, settings=app.settings, principal=request.ctx.principal, client=client(request)
    )
    day = document["generated_at"][:10]
    return json_response(
        document, headers={"content-disposition": f'attachment; filename="manas360-export-{day}.json"'}
    )


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
