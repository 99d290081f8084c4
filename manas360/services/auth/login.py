"""Login with an email and a password: the password check, then the gate.

The check is guarded by the lockout (manas360.services.auth.password_check): an unknown
email and a wrong password take the same path and get the same 401. With the password
right, the gate decides under the user row lock: a session, a refusal (disabled, email not
verified, this source locked out), or, with MFA on, a single-use `mfa_token` in a 403
MfaRequired instead of a session (manas360.services.auth.mfa_verify completes it). Every
attempt is recorded in login_attempts; an outdated bcrypt cost is upgraded on the way
(compare-and-set on the password's version, which it does not move).
"""

from __future__ import annotations

from manas360 import metrics
from manas360.clock import Clock
from manas360.db import Database
from manas360.errors import (
    AccountDisabled,
    AccountLocked,
    AccountPendingDeletion,
    AppError,
    EmailNotVerified,
    InvalidCredentials,
    MfaRequired,
)
from manas360.security.jwt import AccessTokenCodec
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import gate, mfa_challenge, password_check
from manas360.services.auth.gate import Flow
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import TokenPair
from manas360.settings import Settings
from manas360.store import Store


async def login(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    email: str,
    password: str,
    client: Client,
) -> TokenPair:
    """Exchange an email and password for a new session's token pair."""
    email = users.normalize_email(email)
    account = await users.get_credentials(
        conn=db.connection, email=email, source=client.source, known_source_s=settings.lockout_known_source_s
    )
    async with password_check.checked_password(
        db=db,
        settings=settings,
        store=store,
        email=email,
        account=account,
        password=password,
        client=client,
        flow=Flow.LOGIN,
    ) as checked:
        new_hash = await password_check.upgraded_hash(settings=settings, account=checked, password=password)
        refusal: AppError | None = None
        async with db.transaction() as conn:
            try:
                current = await password_check.confirm(
                    conn, settings=settings, checked=checked, client=client, new_hash=new_hash
                )
            except InvalidCredentials as exc:  # the password changed since it was checked
                refusal = exc
                await password_check.record_attempt(
                    conn, email=email, account=checked, client=client, reason="password_changed"
                )
            else:
                decision = await gate.decide(
                    settings=settings, store=store, account=current, flow=Flow.LOGIN, proof=gate.PASSWORD, client=client
                )
                if decision.refusal is not None:
                    refusal = decision.refusal
                    await password_check.record_attempt(
                        conn, email=email, account=current, client=client, reason=_reason(refusal)
                    )
                elif decision.needs_second_factor:
                    token = await mfa_challenge.issue(conn, user_id=current.user_id, amr=gate.PASSWORD.amr)
                    refusal = MfaRequired(mfa_token=token)
                    await password_check.record_attempt(
                        conn, email=email, account=current, client=client, reason="mfa_required"
                    )
                    await audit.record(
                        conn, action=audit.MFA_CHALLENGED, actor_id=None, target_user_id=current.user_id, ip=client.ip
                    )
                else:
                    await password_check.record_attempt(
                        conn, email=email, account=current, client=client, reason="ok", success=True
                    )
                    admitted = await gate.admit(  # the user's row is locked by confirm
                        conn,
                        settings=settings,
                        user_id=current.user_id,
                        client=client,
                        flow=Flow.LOGIN,
                        proof=gate.PASSWORD,
                        action=audit.LOGIN,
                    )
    if refusal is not None:
        if isinstance(refusal, MfaRequired):
            metrics.LOGINS.labels("mfa_required").inc()
        raise refusal
    metrics.LOGINS.labels("success").inc()
    return admitted.issue(settings=settings, codec=codec, clock=clock)


def _reason(refusal: AppError) -> str:
    return {
        AccountLocked: "locked",
        AccountDisabled: "disabled",
        AccountPendingDeletion: "pending_deletion",
        EmailNotVerified: "unverified",
    }.get(type(refusal), "refused")
