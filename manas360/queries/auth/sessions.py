"""Sessions and their refresh tokens: sessions, tokens, revoked_access_tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

INSERT_SESSION_SQL = (
    'INSERT INTO "sessions" ("id", "user_id", "ip", "user_agent", "created_at", "last_used_at", "expires_at", '
    '"auth_time", "amr", "aal") VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9)'
)
INSERT_FIRST_TOKEN_SQL = (
    'INSERT INTO "tokens" ("id", "session_id", "user_id", "token_hash", "created_at", "expires_at") '
    "VALUES ($1, $2, $3, $4, $5, $6)"
)
INSERT_SUCCESSOR_TOKEN_SQL = (
    'INSERT INTO "tokens" ("id", "session_id", "user_id", "token_hash", "parent_id", "created_at", "expires_at") '
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
REVOKE_SESSION_SQL = (
    'UPDATE "sessions" SET "revoked_at" = $3, "revoke_reason" = $4 '
    'WHERE "id" = $1 AND "user_id" = $2 AND "revoked_at" IS NULL AND "expires_at" > $3 RETURNING "id"'
)
LOCK_USER_SESSIONS_SQL = (
    'SELECT "id" FROM "sessions" WHERE "user_id" = $1 AND "revoked_at" IS NULL ORDER BY "id" FOR UPDATE'
)
REVOKE_SESSIONS_SQL = 'UPDATE "sessions" SET "revoked_at" = $2, "revoke_reason" = $3 WHERE "id" = ANY($1::uuid[])'
REVOKE_REFRESH_TOKENS_SQL = (
    'UPDATE "tokens" SET "revoked_at" = $2 WHERE "session_id" = ANY($1::uuid[]) AND "revoked_at" IS NULL'
)
LIVE_SESSIONS_SQL = (
    'SELECT "id", "created_at", "last_used_at", "ip", "user_agent" FROM "sessions" '
    'WHERE "user_id" = $1 AND "revoked_at" IS NULL AND "expires_at" > clock_timestamp() '
    'ORDER BY "created_at" DESC'
)
REVOKE_ACCESS_TOKEN_SQL = (
    'INSERT INTO "revoked_access_tokens" '
    '("jti", "user_id", "session_id", "reason", "revoked_at", "expires_at") '
    'VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT ("jti") DO NOTHING'
)
CALLER_EPOCH_SQL = (
    'SELECT u."tokens_valid_after" FROM "sessions" s JOIN "user_accounts" u ON u."id" = s."user_id" '
    'WHERE s."id" = $1 AND s."user_id" = $2 AND s."revoked_at" IS NULL AND s."expires_at" > clock_timestamp()'
)
TOKEN_SESSION_SQL = (
    'SELECT t."session_id", u."status" FROM "tokens" t JOIN "user_accounts" u ON u."id" = t."user_id" '
    'WHERE t."token_hash" = $1 AND u."deleted_at" IS NULL'
)
LOCK_LIVE_SESSION_SQL = (
    'SELECT u."status", s."created_at", s."auth_time", s."amr", s."aal" '
    'FROM "sessions" s JOIN "user_accounts" u ON u."id" = s."user_id" '
    'WHERE s."id" = $1 AND s."revoked_at" IS NULL AND u."deleted_at" IS NULL FOR UPDATE OF s'
)
TOKEN_SQL = (
    'SELECT "id", "session_id", "user_id", "expires_at", "rotated_at", "revoked_at" FROM "tokens" '
    'WHERE "token_hash" = $1'
)
MARK_ROTATED_SQL = 'UPDATE "tokens" SET "rotated_at" = $2 WHERE "id" = $1'
EXTEND_SESSION_SQL = 'UPDATE "sessions" SET "expires_at" = $2 WHERE "id" = $1'
TOUCH_SESSION_SQL = 'UPDATE "sessions" SET "last_used_at" = $2 WHERE "id" = $1'
LIVE_CHILDREN_SQL = (
    'SELECT "id", "token_hash" FROM "tokens" WHERE "parent_id" = $1 AND "rotated_at" IS NULL '
    'AND "revoked_at" IS NULL AND "expires_at" > $2'
)


async def insert_session(
    *,
    conn: BaseDBAsyncClient,
    session_id: str,
    user_id: str,
    ip: str,
    user_agent: str,
    now: datetime,
    expires_at: datetime,
    auth_time: datetime,
    amr: list[str],
    aal: int,
) -> None:
    """A new session, created and last used `now`, its user proved at `auth_time` with `amr`."""
    await conn.execute_query(
        INSERT_SESSION_SQL, [session_id, user_id, ip, user_agent, now, expires_at, auth_time, amr, aal]
    )


async def insert_first_token(
    *,
    conn: BaseDBAsyncClient,
    token_id: str,
    session_id: str,
    user_id: str,
    token_hash: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """A session's first refresh token (no parent)."""
    await conn.execute_query(INSERT_FIRST_TOKEN_SQL, [token_id, session_id, user_id, token_hash, now, expires_at])


async def insert_successor_token(
    *,
    conn: BaseDBAsyncClient,
    token_id: str,
    session_id: str,
    user_id: str,
    token_hash: str,
    parent_id: uuid.UUID,
    now: datetime,
    expires_at: datetime,
) -> None:
    """The one successor of a rotated refresh token."""
    await conn.execute_query(
        INSERT_SUCCESSOR_TOKEN_SQL, [token_id, session_id, user_id, token_hash, parent_id, now, expires_at]
    )


async def revoke_session(*, conn: BaseDBAsyncClient, session_id: str, user_id: str, reason: str, now: datetime) -> bool:
    """Revoke one live, unexpired session of `user_id` (its row only); False if there is none."""
    rows = await conn.execute_query_dict(REVOKE_SESSION_SQL, [session_id, user_id, now, reason])
    return bool(rows)


async def lock_live_session_ids(*, conn: BaseDBAsyncClient, user_id: str) -> list[str]:
    """Lock the user's unrevoked sessions in id order (FOR UPDATE); their ids."""
    rows = await conn.execute_query_dict(LOCK_USER_SESSIONS_SQL, [user_id])
    return [str(row["id"]) for row in rows]


async def revoke_sessions(*, conn: BaseDBAsyncClient, session_ids: list[str], reason: str, now: datetime) -> None:
    await conn.execute_query(REVOKE_SESSIONS_SQL, [session_ids, now, reason])


async def revoke_refresh_tokens(*, conn: BaseDBAsyncClient, session_ids: list[str], now: datetime) -> None:
    """Revoke the unrevoked refresh tokens of these sessions."""
    await conn.execute_query(REVOKE_REFRESH_TOKENS_SQL, [session_ids, now])


class LiveSession(NamedTuple):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    ip: str
    user_agent: str


async def live_sessions(*, conn: BaseDBAsyncClient, user_id: str) -> list[LiveSession]:
    """The user's unrevoked, unexpired sessions (by the database's clock), newest first."""
    return [LiveSession(**row) for row in await conn.execute_query_dict(LIVE_SESSIONS_SQL, [user_id])]


async def revoke_access_token(
    *,
    conn: BaseDBAsyncClient,
    jti: str,
    user_id: str,
    session_id: str,
    reason: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Deny one access token by its jti until it expires (idempotent)."""
    await conn.execute_query(REVOKE_ACCESS_TOKEN_SQL, [jti, user_id, session_id, reason, now, expires_at])


async def caller_epoch(*, conn: BaseDBAsyncClient, session_id: str, user_id: str) -> tuple[bool, datetime | None]:
    """(whether the session is live and the user's, the user's tokens_valid_after)."""
    rows = await conn.execute_query_dict(CALLER_EPOCH_SQL, [session_id, user_id])
    return (True, rows[0]["tokens_valid_after"]) if rows else (False, None)


class TokenSession(NamedTuple):
    session_id: uuid.UUID
    status: str
    """The owner's account status."""


async def token_session(*, conn: BaseDBAsyncClient, token_hash: str) -> TokenSession | None:
    """The refresh token's session id and its live owner's status (no lock), or None."""
    rows = await conn.execute_query_dict(TOKEN_SESSION_SQL, [token_hash])
    return TokenSession(**rows[0]) if rows else None


class LockedSession(NamedTuple):
    status: str
    """The user's account status."""
    created_at: datetime
    """The login that opened the session (its absolute age counts from here)."""
    auth_time: datetime
    amr: tuple[str, ...]
    aal: int


async def lock_live_session(*, conn: BaseDBAsyncClient, session_id: str) -> LockedSession | None:
    """Lock the unrevoked session of a live user (FOR UPDATE OF s): the user's status and the
    session's login time and assurance; None when there is no such session."""
    rows = await conn.execute_query_dict(LOCK_LIVE_SESSION_SQL, [session_id])
    if not rows:
        return None
    row = rows[0]
    return LockedSession(str(row["status"]), row["created_at"], row["auth_time"], tuple(row["amr"]), row["aal"])


SET_ASSURANCE_SQL = 'UPDATE "sessions" SET "auth_time" = $2, "amr" = $3, "aal" = $4 WHERE "id" = $1'


async def set_assurance(
    *, conn: BaseDBAsyncClient, session_id: str, auth_time: datetime, amr: list[str], aal: int
) -> None:
    """The session's user proved who they are again (a re-authentication)."""
    await conn.execute_query(SET_ASSURANCE_SQL, [session_id, auth_time, amr, aal])


REVOKE_SESSION_REFRESH_TOKENS_SQL = (
    'UPDATE "tokens" SET "revoked_at" = $2 WHERE "session_id" = $1 AND "revoked_at" IS NULL'
)


async def revoke_session_refresh_tokens(*, conn: BaseDBAsyncClient, session_id: str, now: datetime) -> None:
    """Revoke a session's refresh tokens (the session stays: a new first token follows)."""
    await conn.execute_query(REVOKE_SESSION_REFRESH_TOKENS_SQL, [session_id, now])


class RefreshToken(NamedTuple):
    id: uuid.UUID
    session_id: uuid.UUID
    user_id: uuid.UUID
    expires_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


async def fetch_token(*, conn: BaseDBAsyncClient, token_hash: str) -> RefreshToken | None:
    """A refresh token by its hash, as it is now (read after its session's lock)."""
    rows = await conn.execute_query_dict(TOKEN_SQL, [token_hash])
    return RefreshToken(**rows[0]) if rows else None


async def mark_rotated(*, conn: BaseDBAsyncClient, token_id: uuid.UUID, now: datetime) -> None:
    await conn.execute_query(MARK_ROTATED_SQL, [token_id, now])


async def extend_session(*, conn: BaseDBAsyncClient, session_id: str, expires_at: datetime) -> None:
    await conn.execute_query(EXTEND_SESSION_SQL, [session_id, expires_at])


async def touch_session(*, conn: BaseDBAsyncClient, session_id: str, now: datetime) -> None:
    await conn.execute_query(TOUCH_SESSION_SQL, [session_id, now])


class ChildToken(NamedTuple):
    id: uuid.UUID
    token_hash: str


async def live_children(*, conn: BaseDBAsyncClient, parent_id: uuid.UUID, now: datetime) -> list[ChildToken]:
    """The unrotated, unrevoked, unexpired successors of a token (id, token_hash)."""
    return [ChildToken(**row) for row in await conn.execute_query_dict(LIVE_CHILDREN_SQL, [parent_id, now])]
