"""Every way out of a session a user or an administrator triggers: logout, a deleted
session, logout-all, and the administrator's revoke-all.

Each one commits to PostgreSQL first (sessions and refresh tokens revoked, the access
token's jti or the user's token epoch recorded), then publishes to Redis
(manas360.services.auth.revocation), so a flush never resurrects a revoked token. The publish
runs to completion even if the client disconnects and its handler is cancelled. Validity
times (session expiry, revocation times, the token epoch) are PostgreSQL's clock.
Logout-all and an administrator's revoke are security events (manas360.services.auth.events):
they also void every outstanding one-time link of the account.
"""

from __future__ import annotations

from manas360.after_commit import run_to_completion
from manas360.clock import db_now, from_ms, to_ms
from manas360.db import Database
from manas360.errors import NotFound
from manas360.queries.auth import sessions as session_queries
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import events, revocation, sessions
from manas360.services.auth.events import Event
from manas360.services.auth.principal import Principal
from manas360.services.auth.sessions import Client
from manas360.settings import Settings
from manas360.store import Store


async def logout(*, db: Database, settings: Settings, store: Store, principal: Principal, client: Client) -> None:
    """Revoke the caller's session: its refresh tokens and access tokens, this one included."""
    async with db.transaction() as conn:
        now = await db_now(conn)
        await sessions.revoke_session(
            conn, session_id=principal.session_id, user_id=principal.user_id, reason="logout", now=now
        )
        await session_queries.revoke_access_token(
            conn=conn,
            jti=principal.jti,
            user_id=principal.user_id,
            session_id=principal.session_id,
            reason="logout",
            now=now,
            expires_at=from_ms(principal.expires_ms),
        )
        await audit.record(
            conn,
            action=audit.LOGOUT,
            actor_id=principal.user_id,
            target_user_id=principal.user_id,
            ip=client.ip,
            after={"session_id": principal.session_id},
        )
    await run_to_completion(
        revocation.publish(
            store,
            settings=settings,
            user_id=principal.user_id,
            now_ms=to_ms(now),
            session_ids=[principal.session_id],
            jtis={principal.jti: principal.expires_ms},
        )
    )


async def delete_session(
    *, db: Database, settings: Settings, store: Store, principal: Principal, session_id: str, client: Client
) -> None:
    """Revoke one of the caller's own sessions; NotFound for anyone else's or an unknown id."""
    async with db.transaction() as conn:
        now = await db_now(conn)
        if not await sessions.revoke_session(
            conn, session_id=session_id, user_id=principal.user_id, reason="deleted", now=now
        ):
            raise NotFound()
        await audit.record(
            conn,
            action=audit.SESSION_REVOKED,
            actor_id=principal.user_id,
            target_user_id=principal.user_id,
            ip=client.ip,
            after={"session_id": session_id},
        )
    await run_to_completion(
        revocation.publish(
            store, settings=settings, user_id=principal.user_id, now_ms=to_ms(now), session_ids=[session_id]
        )
    )


async def logout_all(*, db: Database, settings: Settings, store: Store, principal: Principal, client: Client) -> None:
    """Revoke every session of the caller."""
    await revoke_all_sessions(
        db=db,
        settings=settings,
        store=store,
        user_id=principal.user_id,
        actor_id=principal.user_id,
        client=client,
        action=audit.LOGOUT_ALL,
        event=Event.LOGOUT_ALL,
    )


async def revoke_all_sessions(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    user_id: str,
    actor_id: str | None,
    client: Client,
    action: str = audit.SESSIONS_REVOKED,
    event: Event = Event.ADMIN_REVOKE,
) -> None:
    """Revoke every session and access token of a user at once (also the admin hook): a
    security event, so every outstanding one-time link of the account dies too."""
    async with db.transaction() as conn:
        account = await users.lock_credentials(conn, user_id=user_id)
        if account is None:
            raise NotFound()
        revoked = await events.record(
            conn, settings=settings, user_id=user_id, event=event, client=client, email=account.email
        )
        await audit.record(
            conn,
            action=action,
            actor_id=actor_id,
            target_user_id=user_id,
            ip=client.ip,
            after={"sessions": len(revoked.session_ids)},
        )
    await events.publish(settings=settings, store=store, revoked=revoked)
