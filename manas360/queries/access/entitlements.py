"""The cached user state: what a cache miss and the warm-up read from user_accounts,
their subscription, revoked_access_tokens and sessions."""

from __future__ import annotations

import uuid
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries.access.subscriptions import ACTIVE_PLAN_JOIN

# One query on a miss: the user's context (role, effective subscription) and revocations.
# ($2: how far back a revoked session can still have a live access token, in seconds.)
USER_STATE_SQL = f"""
    SELECT u."id", u."deleted_at" IS NOT NULL AS "deleted", u."status", r."name" AS "role",
           COALESCE(p."name", 'free') AS "plan",
           (EXTRACT(EPOCH FROM s."ends_at") * 1000)::bigint AS "plan_end_ms",
           (EXTRACT(EPOCH FROM u."tokens_valid_after") * 1000)::bigint AS "epoch_ms",
           j."jtis", j."exp_ms", x."sids", x."revoked_ms"
    FROM "user_accounts" u
    JOIN "roles" r ON r."id" = u."role_id"
    {ACTIVE_PLAN_JOIN}
    LEFT JOIN LATERAL (
        SELECT array_agg(t."jti"::text) AS "jtis",
               array_agg((EXTRACT(EPOCH FROM t."expires_at") * 1000)::bigint) AS "exp_ms"
        FROM "revoked_access_tokens" t WHERE t."user_id" = u."id" AND t."expires_at" > now()
    ) j ON TRUE
    LEFT JOIN LATERAL (
        SELECT array_agg(z."id"::text) AS "sids",
               array_agg((EXTRACT(EPOCH FROM z."revoked_at") * 1000)::bigint) AS "revoked_ms"
        FROM "sessions" z WHERE z."user_id" = u."id" AND z."revoked_at" > now() - make_interval(secs => $2)
    ) x ON TRUE
    WHERE {{where}}"""
USER_STATE_BY_ID_SQL = USER_STATE_SQL.format(where='u."id" = $1')
USER_STATES_BY_IDS_SQL = USER_STATE_SQL.format(where='u."id" = ANY($1::uuid[])')

# Warm-up candidates: live, active accounts, optionally only those seen in the last N days.
_CANDIDATES = 'u."deleted_at" IS NULL AND u."status" = \'active\''
_RECENT = ' AND u."last_login_at" > now() - make_interval(days => {days})'
COUNT_CANDIDATES_SQL = 'SELECT count(*) AS "n" FROM "user_accounts" u WHERE {where}'
CANDIDATE_IDS_SQL = 'SELECT u."id" FROM "user_accounts" u WHERE {where} AND u."id" > $1 ORDER BY u."id" LIMIT {limit}'


class UserStateRow(NamedTuple):
    """What the cache holds of a user, as PostgreSQL has it (USER_STATE_SQL)."""

    id: uuid.UUID
    deleted: bool
    status: str
    role: str
    plan: str
    plan_end_ms: int | None
    epoch_ms: int | None
    jtis: list[str] | None
    exp_ms: list[int] | None
    sids: list[str] | None
    revoked_ms: list[int] | None


async def fetch_user_state(*, conn: BaseDBAsyncClient, user_id: str, horizon_s: int) -> UserStateRow | None:
    """The user's USER_STATE_SQL row (deleted users included, flagged `deleted`), or None."""
    rows = await conn.execute_query_dict(USER_STATE_BY_ID_SQL, [user_id, horizon_s])
    return UserStateRow(**rows[0]) if rows else None


async def fetch_user_states(*, conn: BaseDBAsyncClient, user_ids: list[str], horizon_s: int) -> list[UserStateRow]:
    """USER_STATE_SQL rows of these users (deleted ones flagged `deleted`)."""
    return [UserStateRow(**row) for row in await conn.execute_query_dict(USER_STATES_BY_IDS_SQL, [user_ids, horizon_s])]


def _candidates(active_days: int | None) -> str:
    return _CANDIDATES + (_RECENT.format(days=int(active_days)) if active_days is not None else "")


async def count_warm_candidates(*, conn: BaseDBAsyncClient, active_days: int | None) -> int:
    """Live, active users (seen in the last `active_days` days when given)."""
    rows = await conn.execute_query_dict(COUNT_CANDIDATES_SQL.format(where=_candidates(active_days)), [])
    n: int = rows[0]["n"]  # Tortoise's rows are dict[str, Any]: count(*) is a bigint
    return n


async def warm_candidate_ids(
    *, conn: BaseDBAsyncClient, active_days: int | None, after_id: str, limit: int
) -> list[str]:
    """The next `limit` candidate ids after `after_id`, in id order (a keyset page)."""
    rows = await conn.execute_query_dict(
        CANDIDATE_IDS_SQL.format(where=_candidates(active_days), limit=int(limit)), [after_id]
    )
    return [str(row["id"]) for row in rows]
