"""POST /auth/reauthenticate: the signed-in user proves who they are again, for step-up.

The password is checked like a login's (counted toward the lockout), and a `code` when sent
(counted like any code). Then, under the user row lock, the caller's session must still be
live and the gate must admit the flow: with MFA on a code is required (403 MfaRequired
otherwise, nothing changes). The same session gets a fresh `auth_time` and the proof's
`amr`/`aal` (2 with a code), and a fresh pair: the new access token carries them, and the
session's earlier refresh tokens are replaced by the new one (`renew`, which the passkey
re-authentication, manas360.services.auth.passkey_login, shares).
"""

from __future__ import annotations

from datetime import timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.clock import Clock, db_now
from manas360.db import Database
from manas360.errors import InvalidCredentials, TokenRevoked
from manas360.queries.auth import sessions as session_queries
from manas360.security.jwt import AccessTokenCodec
from manas360.security.secretbox import SecretBox
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import codes, gate, password_check, sessions
from manas360.services.auth.gate import PWD, Flow, Proof
from manas360.services.auth.principal import Principal
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import Assurance, TokenPair, issue_pair
from manas360.settings import Settings
from manas360.store import Store


async def reauthenticate(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    box: SecretBox,
    principal: Principal,
    password: str,
    code: str | None,
    client: Client,
) -> TokenPair:
    """A fresh `auth_time` (and `aal` 2 with a code) for the caller's session: a new pair."""
    account = await users.get_credentials(
        conn=db.connection,
        user_id=principal.user_id,
        source=client.source,
        known_source_s=settings.lockout_known_source_s,
    )
    if account is None:
        raise InvalidCredentials()
    async with (
        password_check.checked_password(
            db=db,
            settings=settings,
            store=store,
            email=account.email,
            account=account,
            password=password,
            client=client,
            flow=Flow.REAUTHENTICATE,
        ) as checked,
        codes.optional_code(
            db=db,
            settings=settings,
            store=store,
            box=box,
            clock=clock,
            account=checked,
            code=code,
            client=client,
            flow=Flow.REAUTHENTICATE,
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
                flow=Flow.REAUTHENTICATE,
                proof=Proof(first=(PWD,), second=match is not None),
                client=client,
            )
        ).enforce()
        if match is not None:
            await codes.spend(conn, user_id=current.user_id, match=match)
        refresh_token, assurance = await renew(conn, settings=settings, principal=principal, proof=proof, client=client)
        user = await users.get_held_user(conn, user_id=current.user_id)
    return issue_pair(
        settings=settings,
        codec=codec,
        clock=clock,
        user=user,
        session_id=principal.session_id,
        refresh_token=refresh_token,
        assurance=assurance,
    )


async def renew(
    conn: BaseDBAsyncClient,
    *,
    settings: Settings,
    principal: Principal,
    proof: Proof,
    client: Client,
    factor: str | None = None,
) -> tuple[str, Assurance]:
    """Under the user row lock, once the gate admitted `proof`: the caller's session gets a
    fresh `auth_time` and the proof's assurance, and a new refresh token replacing its earlier
    ones; audited. (The password and the passkey re-authentications share it.)"""
    now = await db_now(conn)
    assurance = Assurance(auth_time=now, amr=proof.amr, aal=proof.aal)
    await session_queries.set_assurance(
        conn=conn, session_id=principal.session_id, auth_time=now, amr=list(proof.amr), aal=proof.aal
    )
    session = await session_queries.lock_live_session(conn=conn, session_id=principal.session_id)
    if session is None:
        raise TokenRevoked()
    expires_at = min(
        now + timedelta(seconds=settings.jwt_refresh_ttl),
        session.created_at + timedelta(seconds=settings.session_max_age_s),
    )
    refresh_token = await sessions.replace_refresh_token(
        conn, session_id=principal.session_id, user_id=principal.user_id, now=now, expires_at=expires_at
    )
    await audit.record(
        conn,
        action=audit.REAUTHENTICATED,
        actor_id=principal.user_id,
        target_user_id=principal.user_id,
        ip=client.ip,
        after={"session_id": principal.session_id, "aal": proof.aal, **({"factor": factor} if factor else {})},
    )
    return refresh_token, assurance
