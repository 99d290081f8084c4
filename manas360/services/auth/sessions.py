"""Sessions and their refresh tokens in PostgreSQL: open, list, revoke.

Lock order, shared by every writer, so concurrent writers queue instead of deadlocking:
the user row, then session rows (by id), then token rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.clock import epoch_ms, iso
from manas360.db import Database
from manas360.errors import TokenRevoked
from manas360.queries.accounts import users as user_queries
from manas360.queries.auth import sessions as session_queries
from manas360.security.jwt import VerifiedToken
from manas360.services.auth.tokens import Assurance, hash_refresh_token, new_refresh_token

MAX_USER_AGENT_CHARS = 512
MAX_IP_CHARS = 64


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request came from, as recorded on sessions, attempts and audit entries."""

    ip: str = ""
    user_agent: str = ""
    source: str = ""
    """What lockouts count the client under: its IPv4 address or IPv6 prefix, as the per-IP
    rate limits do (the edge computes it); the address itself when not given."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip", self.ip[:MAX_IP_CHARS])
        object.__setattr__(self, "user_agent", self.user_agent[:MAX_USER_AGENT_CHARS])
        object.__setattr__(self, "source", (self.source or self.ip or "-")[:MAX_IP_CHARS])


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    created_at: datetime
    last_used_at: datetime
    ip: str
    user_agent: str
    current: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "ip": self.ip,
            "user_agent": self.user_agent,
            "current": self.current,
        }


async def open_session(
    conn: BaseDBAsyncClient, *, user_id: str, client: Client, refresh_ttl_s: int, now: datetime, assurance: Assurance
) -> tuple[str, str]:
    """Create a session and its first refresh token; return (session id, refresh token).

    `now` is the database's clock (manas360.clock.db_now), as every validity time. Only the
    gate (manas360.services.auth.gate.open_session) opens sessions.
    """
    session_id, refresh_token = str(uuid.uuid4()), new_refresh_token()
    expires_at = now + timedelta(seconds=refresh_ttl_s)
    await session_queries.insert_session(
        conn=conn,
        session_id=session_id,
        user_id=user_id,
        ip=client.ip,
        user_agent=client.user_agent,
        now=now,
        expires_at=expires_at,
        auth_time=assurance.auth_time,
        amr=list(assurance.amr),
        aal=assurance.aal,
    )
    await session_queries.insert_first_token(
        conn=conn,
        token_id=str(uuid.uuid4()),
        session_id=session_id,
        user_id=user_id,
        token_hash=hash_refresh_token(refresh_token),
        now=now,
        expires_at=expires_at,
    )
    return session_id, refresh_token


async def lock_user(conn: BaseDBAsyncClient, *, user_id: str) -> bool:
    """Lock the user row (first in the lock order); False when the user does not exist."""
    return await user_queries.lock_user_row(conn=conn, user_id=user_id)


async def revoke_session(conn: BaseDBAsyncClient, *, session_id: str, user_id: str, reason: str, now: datetime) -> bool:
    """Revoke one live session of `user_id` and its refresh tokens; False if there is none."""
    if not await session_queries.revoke_session(
        conn=conn, session_id=session_id, user_id=user_id, reason=reason, now=now
    ):
        return False
    await _revoke_refresh_tokens(conn, session_ids=[session_id], now=now)
    return True


async def revoke_user_sessions(
    conn: BaseDBAsyncClient, *, user_id: str, reason: str, now: datetime, keep: str | None = None
) -> list[str]:
    """Revoke every session of the user (but `keep`) and their refresh tokens; return the ids."""
    session_ids = [
        sid for sid in await session_queries.lock_live_session_ids(conn=conn, user_id=user_id) if sid != keep
    ]
    if session_ids:
        await session_queries.revoke_sessions(conn=conn, session_ids=session_ids, reason=reason, now=now)
        await _revoke_refresh_tokens(conn, session_ids=session_ids, now=now)
    return session_ids


async def _revoke_refresh_tokens(conn: BaseDBAsyncClient, *, session_ids: list[str], now: datetime) -> None:
    await session_queries.revoke_refresh_tokens(conn=conn, session_ids=session_ids, now=now)


async def list_sessions(*, db: Database, user_id: str, current_session_id: str) -> list[SessionInfo]:
    """The user's live sessions, newest first, the caller's own marked `current`."""
    rows = await session_queries.live_sessions(conn=db.connection, user_id=user_id)
    return [
        SessionInfo(
            id=str(row.id),
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            ip=row.ip,
            user_agent=row.user_agent,
            current=str(row.id) == current_session_id,
        )
        for row in rows
    ]


async def ensure_caller_live(conn: BaseDBAsyncClient, *, principal: VerifiedToken) -> None:
    """TokenRevoked unless the caller's session and token are still live (call it under the
    user row lock: a revocation that committed meanwhile wins)."""
    live, tokens_valid_after = await session_queries.caller_epoch(
        conn=conn, session_id=principal.session_id, user_id=principal.user_id
    )
    if not live or principal.issued_ms <= epoch_ms(tokens_valid_after):
        raise TokenRevoked()


async def replace_refresh_token(
    conn: BaseDBAsyncClient, *, session_id: str, user_id: str, now: datetime, expires_at: datetime
) -> str:
    """A new first refresh token for a live session, its earlier ones revoked (a
    re-authentication hands out a fresh pair for the same session)."""
    await session_queries.revoke_session_refresh_tokens(conn=conn, session_id=session_id, now=now)
    await session_queries.extend_session(conn=conn, session_id=session_id, expires_at=expires_at)
    refresh_token = new_refresh_token()
    await session_queries.insert_first_token(
        conn=conn,
        token_id=str(uuid.uuid4()),
        session_id=session_id,
        user_id=user_id,
        token_hash=hash_refresh_token(refresh_token),
        now=now,
        expires_at=expires_at,
    )
    return refresh_token
