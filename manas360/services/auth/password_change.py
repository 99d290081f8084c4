"""POST /auth/password: a new password for a signed-in user, then a new session, the only one.

The current password is checked like a login's (reserved against the lockout first; a wrong
one counts as a failed login). With MFA on the change also needs a second factor: a `code`
(checked and counted like any code), unless the caller's token already has `aal` 2 and a
fresh `auth_time` (REAUTH_MAX_AGE_S); otherwise 403 ReauthenticationRequired and nothing is
checked or changed. Under the user row lock the caller's session must still be live, the
password still at the version checked, and the gate must admit the change; then the
password is set (its version moves), and the security event revokes every session, the
caller's too, voids every one-time link and mails the owner; a new session opens.
"""

from __future__ import annotations

from manas360.clock import Clock, db_now
from manas360.db import Database
from manas360.errors import InvalidCredentials, ReauthenticationRequired, ValidationError
from manas360.security.jwt import AccessTokenCodec
from manas360.security.password_rules import password_problem
from manas360.security.passwords import hash_password
from manas360.security.secretbox import SecretBox
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import codes, events, gate, password_check, sessions, stepup
from manas360.services.auth.events import Event
from manas360.services.auth.gate import PWD, Flow, Proof
from manas360.services.auth.principal import Principal
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import TokenPair
from manas360.settings import Settings
from manas360.store import Store


async def change_password(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    box: SecretBox,
    principal: Principal,
    current_password: str,
    new_password: str,
    code: str | None,
    client: Client,
) -> TokenPair:
    """Set a new password, revoke every session (this one too), and open a new one."""
    account = await users.get_credentials(
        conn=db.connection,
        user_id=principal.user_id,
        source=client.source,
        known_source_s=settings.lockout_known_source_s,
    )
    if account is None:
        raise InvalidCredentials()
    refused = password_problem(new_password, email=account.email)
    if refused:  # before the current password is checked: a refusal costs no lockout attempt
        raise ValidationError({"password": refused, "new_password": refused})
    carried = principal.aal >= 2 and stepup.is_fresh(
        settings=settings, principal=principal, now=await db_now(db.connection)
    )
    if account.mfa_enabled and code is None and not carried:
        raise ReauthenticationRequired(max_age=settings.reauth_max_age_s, required_aal=2)
    async with password_check.checked_password(
        db=db,
        settings=settings,
        store=store,
        email=account.email,
        account=account,
        password=current_password,
        client=client,
        flow=Flow.PASSWORD_CHANGE,
    ) as checked:
        new_hash = await hash_password(password=new_password, cost=settings.bcrypt_cost)
        async with (
            codes.optional_code(
                db=db,
                settings=settings,
                store=store,
                box=box,
                clock=clock,
                account=checked,
                code=code,
                client=client,
                flow=Flow.PASSWORD_CHANGE,
            ) as match,
            db.transaction() as conn,
        ):
            # The caller's own revocation is the first refusal (TokenRevoked), then the check's.
            await sessions.lock_user(conn, user_id=principal.user_id)
            await sessions.ensure_caller_live(conn, principal=principal)
            current = await password_check.confirm(conn, settings=settings, checked=checked, client=client)
            proof = (
                await gate.decide(
                    settings=settings,
                    store=store,
                    account=current,
                    flow=Flow.PASSWORD_CHANGE,
                    proof=Proof(first=(PWD,), second=match is not None or carried),
                    client=client,
                )
            ).enforce()
            if match is not None:
                await codes.spend(conn, user_id=current.user_id, match=match)
            if not await users.set_password(
                conn, user_id=current.user_id, version=current.password_version, new_hash=new_hash
            ):
                raise InvalidCredentials()
            revoked = await events.record(
                conn,
                settings=settings,
                user_id=current.user_id,
                event=Event.PASSWORD_CHANGED,
                client=client,
                email=current.email,
            )
            admitted = await gate.admit(  # after the event's epoch: the new session outlives it
                conn,
                settings=settings,
                user_id=current.user_id,
                client=client,
                flow=Flow.PASSWORD_CHANGE,
                proof=proof,
                action=audit.PASSWORD_CHANGED,
                details={"sessions_revoked": len(revoked.session_ids)},
            )
    await events.publish(settings=settings, store=store, revoked=revoked)
    # The pair is minted after the stored epoch, so the new session outlives the one that killed the others.
    return admitted.issue(settings=settings, codec=codec, clock=clock)
