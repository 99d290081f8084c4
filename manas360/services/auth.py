"""Registration and every revocation a user triggers: logout, logout-all, a deleted
session, a password change, and the administrator's revoke-all hook.

Each one commits to PostgreSQL first (sessions and refresh tokens revoked, the access
token's jti or the user's token epoch recorded), then publishes to Redis
(manas360.services.revocation), so a flush never resurrects a revoked token.
"""

from __future__ import annotations

from types import SimpleNamespace

from tortoise.transactions import in_transaction

from manas360.errors import InvalidCredentials, NotFound, ValidationError
from manas360.security.passwords import hash_password, verify_password
from manas360.services import audit, revocation, sessions, users
from manas360.services.access import Principal
from manas360.services.clock import from_ms, to_ms, utcnow
from manas360.services.sessions import Client
from manas360.services.tokens import TokenPair, issue_pair


async def register(ctx: SimpleNamespace, *, email: str, password: str, display_name: str,
                   client: Client) -> TokenPair:
    """Create an account (role `user`, plan free) and its first session."""
    email = users.normalize_email(email)
    problem = users.email_problem(email)
    if problem:
        raise ValidationError({"email": problem})
    password_hash = await hash_password(password=password, cost=ctx.settings.bcrypt_cost)
    now = utcnow()
    async with in_transaction() as conn:
        user_id = await users.insert_user(conn, email=email, password_hash=password_hash,
                                          display_name=display_name.strip())
        session_id, refresh_token = await sessions.open_session(
            conn, user_id=user_id, client=client, refresh_ttl_s=ctx.settings.jwt_refresh_ttl, now=now)
        await audit.record(conn, action=audit.REGISTER, actor_id=user_id, target_user_id=user_id, ip=client.ip,
                           after={"email": email, "session_id": session_id})
        user = await users.get_user(user_id=user_id, conn=conn)
    return issue_pair(ctx, user=user, session_id=session_id, refresh_token=refresh_token)


async def logout(ctx: SimpleNamespace, *, principal: Principal, client: Client) -> None:
    """Revoke the caller's session: its refresh tokens and access tokens, this one included."""
    now = utcnow()
    async with in_transaction() as conn:
        await sessions.revoke_session(conn, session_id=principal.session_id, user_id=principal.user_id,
                                      reason="logout", now=now)
        await conn.execute_query(
            'INSERT INTO "revoked_access_tokens" ("jti", "user_id", "session_id", "reason", "revoked_at", "expires_at") '
            'VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT ("jti") DO NOTHING',
            [principal.jti, principal.user_id, principal.session_id, "logout", now, from_ms(principal.expires_ms)])
        await audit.record(conn, action=audit.LOGOUT, actor_id=principal.user_id, target_user_id=principal.user_id,
                           ip=client.ip, after={"session_id": principal.session_id})
    await revocation.publish(ctx.store, settings=ctx.settings, user_id=principal.user_id, now_ms=to_ms(now),
                             session_ids=[principal.session_id], jtis={principal.jti: principal.expires_ms})


async def delete_session(ctx: SimpleNamespace, *, principal: Principal, session_id: str, client: Client) -> None:
    """Revoke one of the caller's own sessions; NotFound for anyone else's or an unknown id."""
    now = utcnow()
    async with in_transaction() as conn:
        if not await sessions.revoke_session(conn, session_id=session_id, user_id=principal.user_id,
                                             reason="deleted", now=now):
            raise NotFound()
        await audit.record(conn, action=audit.SESSION_REVOKED, actor_id=principal.user_id,
                           target_user_id=principal.user_id, ip=client.ip, after={"session_id": session_id})
    await revocation.publish(ctx.store, settings=ctx.settings, user_id=principal.user_id, now_ms=to_ms(now),
                             session_ids=[session_id])


async def logout_all(ctx: SimpleNamespace, *, principal: Principal, client: Client) -> None:
    """Revoke every session of the caller."""
    await revoke_all_sessions(ctx, user_id=principal.user_id, actor_id=principal.user_id, client=client,
                              action=audit.LOGOUT_ALL, reason="logout_all")


async def revoke_all_sessions(ctx: SimpleNamespace, *, user_id: str, actor_id: str | None, client: Client,
                              action: str = audit.SESSIONS_REVOKED, reason: str = "admin") -> None:
    """Revoke every session and access token of a user at once (also the admin hook)."""
    now = utcnow()
    async with in_transaction() as conn:
        if not await sessions.lock_user(conn, user_id=user_id):
            raise NotFound()
        session_ids = await sessions.revoke_user_sessions(conn, user_id=user_id, reason=reason, now=now)
        epoch_ms = await _move_epoch(conn, user_id=user_id)
        await audit.record(conn, action=action, actor_id=actor_id, target_user_id=user_id, ip=client.ip,
                           after={"sessions": len(session_ids)})
    await revocation.publish(ctx.store, settings=ctx.settings, user_id=user_id, now_ms=to_ms(now),
                             epoch_ms=epoch_ms, session_ids=session_ids)


async def change_password(ctx: SimpleNamespace, *, principal: Principal, current_password: str, new_password: str,
                          client: Client) -> TokenPair:
    """Set a new password, revoke every session (this one too), and open a new one."""
    settings = ctx.settings
    account = await users.get_credentials(user_id=principal.user_id)
    if account is None or not await verify_password(password=current_password, password_hash=account.password_hash):
        raise InvalidCredentials()
    new_hash = await hash_password(password=new_password, cost=settings.bcrypt_cost)
    now = utcnow()
    async with in_transaction() as conn:
        if not await sessions.lock_user(conn, user_id=principal.user_id):
            raise InvalidCredentials()
        session_ids = await sessions.revoke_user_sessions(conn, user_id=principal.user_id, reason="password_change",
                                                          now=now)
        epoch_ms = await _move_epoch(conn, user_id=principal.user_id, password_hash=new_hash)
        session_id, refresh_token = await sessions.open_session(
            conn, user_id=principal.user_id, client=client, refresh_ttl_s=settings.jwt_refresh_ttl, now=now)
        await audit.record(conn, action=audit.PASSWORD_CHANGED, actor_id=principal.user_id,
                           target_user_id=principal.user_id, ip=client.ip,
                           after={"sessions_revoked": len(session_ids), "session_id": session_id})
        user = await users.get_user(user_id=principal.user_id, conn=conn)
    await revocation.publish(ctx.store, settings=settings, user_id=principal.user_id, now_ms=to_ms(now),
                             epoch_ms=epoch_ms, session_ids=session_ids)
    # The new session's first token must outlive the epoch that killed all the others.
    return issue_pair(ctx, user=user, session_id=session_id, refresh_token=refresh_token,
                      not_before_ms=epoch_ms + 1)


async def _move_epoch(conn, *, user_id: str, password_hash: str | None = None) -> int:
    """Kill every access token of the user issued until now; return the epoch (ms).

    Taken after the user's sessions are locked and revoked, so a refresh that committed
    before holds an older issue time, and one that comes after finds its session revoked.
    """
    epoch_ms = to_ms(utcnow())
    await conn.execute_query(
        'UPDATE "user_accounts" SET "tokens_valid_after" = GREATEST("tokens_valid_after", $2), '
        '"password_hash" = COALESCE($3, "password_hash"), "updated_at" = now() WHERE "id" = $1',
        [user_id, from_ms(epoch_ms), password_hash])
    return epoch_ms
