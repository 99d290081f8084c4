"""Registration and every revocation a user triggers: logout, logout-all, a deleted
session, a password change, and the administrator's revoke-all hook.

Each one commits to PostgreSQL first (sessions and refresh tokens revoked, the access
token's jti or the user's token epoch recorded), then publishes to Redis
(manas360.services.revocation), so a flush never resurrects a revoked token. The publish
runs to completion even if the client disconnects and its handler is cancelled. Validity
times (session expiry, revocation times, the token epoch) are PostgreSQL's clock.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from manas360.clock import Clock, db_now, epoch_ms, from_ms, to_ms
from manas360.errors import InvalidCredentials, NotFound, TokenRevoked, ValidationError
from manas360.queries import sessions as session_queries
from manas360.queries import users as user_queries
from manas360.repair import run_to_completion
from manas360.security.jwt import AccessTokenCodec
from manas360.security.passwords import hash_password, verify_password
from manas360.services import audit, login, revocation, sessions, users, verification
from manas360.services.lockout import release_check
from manas360.services.principal import Principal
from manas360.services.sessions import Client
from manas360.services.tokens import TokenPair, issue_pair
from manas360.settings import Settings
from manas360.store import Store


async def register(*, settings: Settings, codec: AccessTokenCodec, clock: Clock, email: str, password: str,
                   display_name: str, client: Client) -> TokenPair:
    """Create an account (role `user`, plan free) and its first session."""
    email = users.normalize_email(email)
    problem = users.email_problem(email)
    if problem:
        raise ValidationError({"email": problem})
    password_hash = await hash_password(password=password, cost=settings.bcrypt_cost)
    async with in_transaction() as conn:
        user_id = await users.insert_user(conn, email=email, password_hash=password_hash,
                                          display_name=display_name.strip())
        session_id, refresh_token = await sessions.open_session(
            conn, user_id=user_id, client=client, refresh_ttl_s=settings.jwt_refresh_ttl, now=await db_now(conn))
        await audit.record(conn, action=audit.REGISTER, actor_id=user_id, target_user_id=user_id, ip=client.ip,
                           after={"email": email, "session_id": session_id})
        # The verification mail commits with the account, or neither exists.
        await verification.send_link(conn, settings=settings, user_id=user_id, email=email, ip=client.ip)
        user = await users.get_held_user(conn, user_id=user_id)  # inserted above
    return issue_pair(settings=settings, codec=codec, clock=clock, user=user, session_id=session_id,
                      refresh_token=refresh_token)


async def logout(*, settings: Settings, store: Store, principal: Principal, client: Client) -> None:
    """Revoke the caller's session: its refresh tokens and access tokens, this one included."""
    async with in_transaction() as conn:
        now = await db_now(conn)
        await sessions.revoke_session(conn, session_id=principal.session_id, user_id=principal.user_id,
                                      reason="logout", now=now)
        await session_queries.revoke_access_token(
            conn=conn, jti=principal.jti, user_id=principal.user_id, session_id=principal.session_id,
            reason="logout", now=now, expires_at=from_ms(principal.expires_ms))
        await audit.record(conn, action=audit.LOGOUT, actor_id=principal.user_id, target_user_id=principal.user_id,
                           ip=client.ip, after={"session_id": principal.session_id})
    await run_to_completion(revocation.publish(
        store, settings=settings, user_id=principal.user_id, now_ms=to_ms(now),
        session_ids=[principal.session_id], jtis={principal.jti: principal.expires_ms}))


async def delete_session(*, settings: Settings, store: Store, principal: Principal, session_id: str,
                         client: Client) -> None:
    """Revoke one of the caller's own sessions; NotFound for anyone else's or an unknown id."""
    async with in_transaction() as conn:
        now = await db_now(conn)
        if not await sessions.revoke_session(conn, session_id=session_id, user_id=principal.user_id,
                                             reason="deleted", now=now):
            raise NotFound()
        await audit.record(conn, action=audit.SESSION_REVOKED, actor_id=principal.user_id,
                           target_user_id=principal.user_id, ip=client.ip, after={"session_id": session_id})
    await run_to_completion(revocation.publish(store, settings=settings, user_id=principal.user_id,
                                               now_ms=to_ms(now), session_ids=[session_id]))


async def logout_all(*, settings: Settings, store: Store, principal: Principal, client: Client) -> None:
    """Revoke every session of the caller."""
    await revoke_all_sessions(settings=settings, store=store, user_id=principal.user_id, actor_id=principal.user_id,
                              client=client, action=audit.LOGOUT_ALL, reason="logout_all")


async def revoke_all_sessions(*, settings: Settings, store: Store, user_id: str, actor_id: str | None,
                              client: Client, action: str = audit.SESSIONS_REVOKED, reason: str = "admin") -> None:
    """Revoke every session and access token of a user at once (also the admin hook)."""
    async with in_transaction() as conn:
        if not await sessions.lock_user(conn, user_id=user_id):
            raise NotFound()
        now = await db_now(conn)
        session_ids = await sessions.revoke_user_sessions(conn, user_id=user_id, reason=reason, now=now)
        epoch = await _move_epoch(conn, user_id=user_id)
        await audit.record(conn, action=action, actor_id=actor_id, target_user_id=user_id, ip=client.ip,
                           after={"sessions": len(session_ids)})
    await run_to_completion(revocation.publish(store, settings=settings, user_id=user_id, now_ms=to_ms(now),
                                               epoch_ms=epoch, session_ids=session_ids))


async def change_password(*, settings: Settings, store: Store, codec: AccessTokenCodec, clock: Clock,
                          principal: Principal, current_password: str, new_password: str,
                          client: Client) -> TokenPair:
    """Set a new password, revoke every session (this one too), and open a new one.

    The current password is checked like a login's (reserved against the lockout first; a
    wrong one counts as a failed login), and what the check saw is confirmed under the user
    row lock: a change or revocation that committed meanwhile wins.
    """
    account = await users.get_credentials(user_id=principal.user_id)
    if account is None:
        raise InvalidCredentials()
    reservation = await login.reserve(settings=settings, store=store, email=account.email, account=account,
                                      client=client, via=login.PASSWORD_CHANGE)
    try:
        if not await verify_password(password=current_password, password_hash=account.password_hash):
            await login.reject(settings=settings, store=store, reservation=reservation, account=account,
                               client=client, via=login.PASSWORD_CHANGE)
        new_hash = await hash_password(password=new_password, cost=settings.bcrypt_cost)
        async with in_transaction() as conn:
            # The caller's own revocation is the first refusal (TokenRevoked), then the check's.
            await sessions.lock_user(conn, user_id=principal.user_id)
            await _ensure_caller_live(conn, principal=principal)
            await login.confirm_check(conn, store=store, account=account)
            now, session_ids, epoch = await _replace_password(conn, account=account, new_hash=new_hash)
            session_id, refresh_token = await sessions.open_session(  # stamped after the epoch it outlives
                conn, user_id=principal.user_id, client=client, refresh_ttl_s=settings.jwt_refresh_ttl,
                now=await db_now(conn))
            await audit.record(conn, action=audit.PASSWORD_CHANGED, actor_id=principal.user_id,
                               target_user_id=principal.user_id, ip=client.ip,
                               after={"sessions_revoked": len(session_ids), "session_id": session_id})
            user = await users.get_held_user(conn, user_id=principal.user_id)  # locked, confirmed live
    finally:
        await release_check(store=store, reservation=reservation)
    await run_to_completion(revocation.publish(store, settings=settings, user_id=principal.user_id,
                                               now_ms=to_ms(now), epoch_ms=epoch, session_ids=session_ids))
    # issue_pair mints after the stored epoch, so the new session outlives the one that killed the others.
    return issue_pair(settings=settings, codec=codec, clock=clock, user=user, session_id=session_id,
                      refresh_token=refresh_token)


async def _ensure_caller_live(conn: BaseDBAsyncClient, *, principal: Principal) -> None:
    """TokenRevoked unless the caller's session and token are still live (under the user row lock)."""
    live, tokens_valid_after = await session_queries.caller_epoch(conn=conn, session_id=principal.session_id,
                                                                  user_id=principal.user_id)
    if not live or principal.issued_ms <= epoch_ms(tokens_valid_after):
        raise TokenRevoked()


async def _replace_password(conn: BaseDBAsyncClient, *, account: users.Credentials,
                            new_hash: str) -> tuple[datetime, list[str], int]:
    """Revoke every session, move the epoch and set the hash; (now, revoked ids, epoch ms)."""
    if not await users.replace_password_hash(conn, user_id=account.user_id, verified_hash=account.password_hash,
                                             new_hash=new_hash):
        raise InvalidCredentials()
    return await revoke_for_new_password(conn, user_id=account.user_id, reason="password_change")


async def _move_epoch(conn: BaseDBAsyncClient, *, user_id: str) -> int:
    """Kill every access token of the user issued until now; return the stored epoch (ms).

    Taken after the user's sessions are locked and revoked, so a refresh that committed
    before holds an older issue time, and one that comes after finds its session revoked.
    PostgreSQL's clock, in whole ms (the tokens' precision), never moved backwards.
    """
    return epoch_ms(await user_queries.move_token_epoch(conn=conn, user_id=user_id))


async def revoke_for_new_password(conn: BaseDBAsyncClient, *, user_id: str,
                                  reason: str) -> tuple[datetime, list[str], int]:
    """In the caller's transaction, user row locked, password just replaced: revoke every
    session and move the epoch, as a password change does; (now, revoked ids, epoch ms) for
    the publish to Redis after the commit."""
    now = await db_now(conn)
    session_ids = await sessions.revoke_user_sessions(conn, user_id=user_id, reason=reason, now=now)
    return now, session_ids, await _move_epoch(conn, user_id=user_id)
