"""Refresh-token rotation: single use, atomic in PostgreSQL, with a grace for racing tabs.

Every presentation locks its session row (FOR UPDATE) before reading the token, so all
refreshes, logouts and revocations of one session run one after another: fifty concurrent
refreshes of one token rotate it exactly once, and a logout racing a refresh either sees
the rotation (and revokes its successor too) or is seen by it (and the refresh fails).

A token already rotated is answered by the grace rule, else treated as reuse:
- within REFRESH_REUSE_GRACE_S of its rotation, while its child is still the live token,
  the same successor is returned again (reproduced, see manas360.services.auth.tokens);
- otherwise (older ancestor, grace over, grace 0) the whole session is revoked, its
  refresh tokens and its access tokens, the owner is mailed, and the answer is 401
  TokenReuseDetected.

A rotation passes the gate as the REFRESH flow (an active account, a verified email when
REQUIRE_VERIFIED_EMAIL; no locks, no second factor of its own: the session was admitted
with its factors). The new access token keeps the session's `auth_time` and `amr`, never
raises them, and carries `aal` 2 only while `auth_time` is within AAL2_MAX_AGE_S. A session
ends SESSION_MAX_AGE_S after its login whatever the refreshes: its tokens never outlive
that.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360 import metrics
from manas360.after_commit import run_to_completion
from manas360.clock import Clock, db_now, to_ms
from manas360.db import Database
from manas360.errors import InvalidToken, TokenReuseDetected, status_refusal
from manas360.models import ACCOUNT_ACTIVE
from manas360.queries.auth import sessions as session_queries
from manas360.queries.auth.sessions import LockedSession
from manas360.security.jwt import AccessTokenCodec
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import gate, revocation, sessions
from manas360.services.auth.events import notify
from manas360.services.auth.gate import Flow, Proof
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import (
    Assurance,
    TokenPair,
    derive_successor,
    hash_refresh_token,
    issue_pair,
    successor_keys,
)
from manas360.settings import Settings
from manas360.store import Store


@dataclass(frozen=True, slots=True)
class _Presented:
    token_id: uuid.UUID
    session_id: str
    user_id: str
    expires_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    session: LockedSession


async def refresh(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    refresh_token: str,
    client: Client,
) -> TokenPair:
    """Exchange a refresh token for a new pair (rotation), or its grace successor again."""
    async with db.transaction() as conn:
        token = await _lock_and_read(conn, token_hash=hash_refresh_token(refresh_token))
        now = await db_now(conn)
        if token is None or token.revoked_at is not None or token.expires_at <= now:
            raise InvalidToken()
        session_ends = token.session.created_at + timedelta(seconds=settings.session_max_age_s)
        if session_ends <= now:
            raise InvalidToken()
        successor: str | None
        if token.rotated_at is None:
            successor = await _rotate(
                conn, settings=settings, token=token, parent=refresh_token, now=now, session_ends=session_ends
            )
        else:
            successor = await _grace_successor(
                conn, settings=settings, token=token, rotated_at=token.rotated_at, parent=refresh_token, now=now
            )
        if successor is not None:
            assurance = await _admit(conn, settings=settings, store=store, token=token, client=client, now=now)
            await session_queries.touch_session(conn=conn, session_id=token.session_id, now=now)
            found = await users.get_user(user_id=token.user_id, conn=conn)
            if found is None:
                # The account was deleted after the token was read (its row is not locked
                # here): no pair for it, and the rotation rolls back with this refusal.
                raise InvalidToken()
            user = found
        else:
            email = await _revoke_for_reuse(conn, settings=settings, token=token, client=client, now=now)
            if email is not None:
                await notify(
                    conn,
                    settings=settings,
                    user_id=token.user_id,
                    email=email,
                    notice="refresh_token_reused",
                    client=client,
                    when=now,
                )
    if successor is None:
        await run_to_completion(
            revocation.publish(
                store, settings=settings, user_id=token.user_id, now_ms=to_ms(now), session_ids=[token.session_id]
            )
        )
        raise TokenReuseDetected()
    return issue_pair(
        settings=settings,
        codec=codec,
        clock=clock,
        user=user,
        session_id=token.session_id,
        refresh_token=successor,
        assurance=assurance,
    )


async def _admit(
    conn: BaseDBAsyncClient, *, settings: Settings, store: Store, token: _Presented, client: Client, now: datetime
) -> Assurance:
    """The gate for a rotation; the assurance the new access token carries (aal decayed)."""
    # Inside the rotation's transaction, as it always ran.
    account = await users.get_credentials(
        conn=conn, user_id=token.user_id, source=client.source, known_source_s=settings.lockout_known_source_s
    )
    if account is None:
        raise InvalidToken()
    session = token.session
    (
        await gate.decide(
            settings=settings,
            store=store,
            account=account,
            flow=Flow.REFRESH,
            proof=Proof(first=session.amr),
            client=client,
        )
    ).enforce()
    recent = now - session.auth_time <= timedelta(seconds=settings.aal2_max_age_s)
    return Assurance(auth_time=session.auth_time, amr=session.amr, aal=session.aal if recent else 1)


async def _lock_and_read(conn: BaseDBAsyncClient, *, token_hash: str) -> _Presented | None:
    """Lock the token's live session, then read the token (after the lock: its latest state).

    AccountDisabled (AccountPendingDeletion) for any token of such an account, live session or not.
    """
    found = await session_queries.token_session(conn=conn, token_hash=token_hash)
    if found is None:
        return None
    _refuse_disabled(found.status)
    session = await session_queries.lock_live_session(conn=conn, session_id=str(found.session_id))
    if session is None:
        return None
    _refuse_disabled(session.status)
    row = await session_queries.fetch_token(conn=conn, token_hash=token_hash)
    if row is None:
        return None
    return _Presented(
        token_id=row.id,
        session_id=str(row.session_id),
        user_id=str(row.user_id),
        expires_at=row.expires_at,
        rotated_at=row.rotated_at,
        revoked_at=row.revoked_at,
        session=session,
    )


def _refuse_disabled(status: str) -> None:
    if status != ACCOUNT_ACTIVE:
        raise status_refusal(status)


async def _rotate(
    conn: BaseDBAsyncClient,
    *,
    settings: Settings,
    token: _Presented,
    parent: str,
    now: datetime,
    session_ends: datetime,
) -> str:
    """Mark the token rotated and store its one successor; return the successor."""
    child_id = uuid.uuid4()
    successor = derive_successor(key=successor_keys(settings)[0], parent=parent, child_id=child_id)
    expires_at = min(now + timedelta(seconds=settings.jwt_refresh_ttl), session_ends)
    await session_queries.mark_rotated(conn=conn, token_id=token.token_id, now=now)
    await session_queries.insert_successor_token(
        conn=conn,
        token_id=str(child_id),
        session_id=token.session_id,
        user_id=token.user_id,
        token_hash=hash_refresh_token(successor),
        parent_id=token.token_id,
        now=now,
        expires_at=expires_at,
    )
    await session_queries.extend_session(conn=conn, session_id=token.session_id, expires_at=expires_at)
    return successor


async def _grace_successor(
    conn: BaseDBAsyncClient, *, settings: Settings, token: _Presented, rotated_at: datetime, parent: str, now: datetime
) -> str | None:
    """The successor again, if within the grace and it is still the live token; else None (reuse).

    `rotated_at` is the token's own rotation time (set: only a rotated token comes here)."""
    grace_s = settings.refresh_reuse_grace_s
    if grace_s <= 0 or (now - rotated_at).total_seconds() > grace_s:
        return None
    rows = await session_queries.live_children(conn=conn, parent_id=token.token_id, now=now)
    if len(rows) != 1:
        return None
    for key in successor_keys(settings):
        successor = derive_successor(key=key, parent=parent, child_id=rows[0].id)
        if hmac.compare_digest(hash_refresh_token(successor), rows[0].token_hash):
            return successor
    return None


async def _revoke_for_reuse(
    conn: BaseDBAsyncClient, *, settings: Settings, token: _Presented, client: Client, now: datetime
) -> str | None:
    """Revoke the whole session: refresh tokens now, access tokens via the session denylist.
    The owner's address, for the notice (None when the account is gone)."""
    await sessions.revoke_session(
        conn, settings=settings, session_id=token.session_id, user_id=token.user_id, reason="reuse", now=now
    )
    await audit.record(
        conn,
        action=audit.REFRESH_REUSE,
        actor_id=None,
        target_user_id=token.user_id,
        ip=client.ip,
        after={"session_id": token.session_id, "token_id": str(token.token_id)},
    )
    metrics.REFRESH_REUSE.inc()
    user = await users.get_user(user_id=token.user_id, conn=conn)
    return user.email if user is not None else None
