"""Sessions and their refresh tokens in PostgreSQL: open, list, revoke.

Lock order, shared by every writer, so concurrent writers queue instead of deadlocking:
the user row, then session rows (by id), then token rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.clock import iso
from manas360.services.tokens import hash_refresh_token, new_refresh_token

MAX_USER_AGENT_CHARS = 512
MAX_IP_CHARS = 64


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request came from, as recorded on sessions, attempts and audit entries."""

    ip: str = ""
    user_agent: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip", self.ip[:MAX_IP_CHARS])
        object.__setattr__(self, "user_agent", self.user_agent[:MAX_USER_AGENT_CHARS])


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    created_at: datetime
    last_used_at: datetime
    ip: str
    user_agent: str
    current: bool

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": iso(self.created_at), "last_used_at": iso(self.last_used_at),
                "ip": self.ip, "user_agent": self.user_agent, "current": self.current}


async def open_session(conn: BaseDBAsyncClient, *, user_id: str, client: Client, refresh_ttl_s: int,
                       now: datetime) -> tuple[str, str]:
    """Create a session and its first refresh token; return (session id, refresh token).

    `now` is the database's clock (manas360.clock.db_now), as every validity time.
    """
    session_id, refresh_token = str(uuid.uuid4()), new_refresh_token()
    expires_at = now + timedelta(seconds=refresh_ttl_s)
    await conn.execute_query(
        'INSERT INTO "sessions" ("id", "user_id", "ip", "user_agent", "created_at", "last_used_at", "expires_at") '
        'VALUES ($1, $2, $3, $4, $5, $5, $6)', [session_id, user_id, client.ip, client.user_agent, now, expires_at])
    await conn.execute_query(
        'INSERT INTO "tokens" ("id", "session_id", "user_id", "token_hash", "created_at", "expires_at") '
        'VALUES ($1, $2, $3, $4, $5, $6)',
        [str(uuid.uuid4()), session_id, user_id, hash_refresh_token(refresh_token), now, expires_at])
    return session_id, refresh_token


async def lock_user(conn: BaseDBAsyncClient, *, user_id: str) -> bool:
    """Lock the user row (first in the lock order); False when the user does not exist."""
    rows = await conn.execute_query_dict(
        'SELECT 1 FROM "user_accounts" WHERE "id" = $1 AND "deleted_at" IS NULL FOR NO KEY UPDATE', [user_id])
    return bool(rows)


async def revoke_session(conn: BaseDBAsyncClient, *, session_id: str, user_id: str, reason: str,
                         now: datetime) -> bool:
    """Revoke one live session of `user_id` and its refresh tokens; False if there is none."""
    rows = await conn.execute_query_dict(
        'UPDATE "sessions" SET "revoked_at" = $3, "revoke_reason" = $4 '
        'WHERE "id" = $1 AND "user_id" = $2 AND "revoked_at" IS NULL AND "expires_at" > $3 RETURNING "id"',
        [session_id, user_id, now, reason])
    if not rows:
        return False
    await _revoke_refresh_tokens(conn, session_ids=[session_id], now=now)
    return True


async def revoke_user_sessions(conn: BaseDBAsyncClient, *, user_id: str, reason: str, now: datetime) -> list[str]:
    """Revoke every session of the user and their refresh tokens; return the session ids."""
    rows = await conn.execute_query_dict(
        'SELECT "id" FROM "sessions" WHERE "user_id" = $1 AND "revoked_at" IS NULL ORDER BY "id" FOR UPDATE',
        [user_id])
    session_ids = [str(row["id"]) for row in rows]
    if session_ids:
        await conn.execute_query(
            'UPDATE "sessions" SET "revoked_at" = $2, "revoke_reason" = $3 WHERE "id" = ANY($1::uuid[])',
            [session_ids, now, reason])
        await _revoke_refresh_tokens(conn, session_ids=session_ids, now=now)
    return session_ids


async def _revoke_refresh_tokens(conn: BaseDBAsyncClient, *, session_ids: list[str], now: datetime) -> None:
    await conn.execute_query(
        'UPDATE "tokens" SET "revoked_at" = $2 WHERE "session_id" = ANY($1::uuid[]) AND "revoked_at" IS NULL',
        [session_ids, now])


async def list_sessions(*, user_id: str, current_session_id: str) -> list[SessionInfo]:
    """The user's live sessions, newest first, the caller's own marked `current`."""
    rows = await connections.get("default").execute_query_dict(
        'SELECT "id", "created_at", "last_used_at", "ip", "user_agent" FROM "sessions" '
        'WHERE "user_id" = $1 AND "revoked_at" IS NULL AND "expires_at" > clock_timestamp() '
        'ORDER BY "created_at" DESC', [user_id])
    return [SessionInfo(id=str(row["id"]), created_at=row["created_at"], last_used_at=row["last_used_at"],
                        ip=row["ip"], user_agent=row["user_agent"], current=str(row["id"]) == current_session_id)
            for row in rows]
