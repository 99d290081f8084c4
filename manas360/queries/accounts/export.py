"""What GET /me/export reads: one statement per table that holds records about a user
(user_accounts, user_subscriptions, sessions, tokens, revoked_access_tokens, account_tokens,
mfa_totp, mfa_recovery_codes, mfa_tokens, login_sources, account_source_locks, login_attempts,
outbox, email_changes, webhook_sequences, rate_limit_logs, audit_logs, audit_logs_archive),
naming the columns it shows: never a hash, a sealed secret or a mail body.

`$1` is the user's id, `$2` their (normalised) address. Audit entries about the user show
other people by role, never by id: the actor's current role (or `system` when none acted).
"""

from __future__ import annotations

from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

_ROLE_OF = """COALESCE((SELECT r."name" FROM "user_accounts" x JOIN "roles" r ON r."id" = x."role_id"
               WHERE x."id" = {column}), CASE WHEN {column} IS NULL THEN 'system' ELSE 'former account' END)"""


def _audit(table: str) -> str:
    actor = _ROLE_OF.format(column='a."actor_id"')
    target = _ROLE_OF.format(column='a."target_user_id"')
    return f"""
    SELECT a."id", a."action", a."created_at",
        CASE WHEN a."actor_id" = $1 THEN 'you' ELSE {actor} END AS "actor",
        CASE WHEN a."target_user_id" = $1 THEN 'you' ELSE {target} END AS "about",
        CASE WHEN a."target_user_id" = $1 OR a."target_user_id" IS NULL THEN a."before" END AS "before",
        CASE WHEN a."target_user_id" = $1 OR a."target_user_id" IS NULL THEN a."after" END AS "after",
        CASE WHEN a."actor_id" = $1 THEN a."ip" END AS "ip"
    FROM "{table}" a
    WHERE (a."target_user_id" = $1 OR a."actor_id" = $1) AND $2::text IS NOT NULL ORDER BY a."id\""""


PROFILE_SQL = """
    SELECT u."id", u."email", u."display_name", r."name" AS "role", u."status", u."created_at", u."updated_at",
        u."email_verified_at", u."mfa_enabled", u."last_login_at", u."locked_until", u."tokens_valid_after",
        u."credential_epoch", u."password_version", u."mfa_failures", u."deletion_requested_at", u."deletion_at",
        u."status_before_deletion"
    FROM "user_accounts" u JOIN "roles" r ON r."id" = u."role_id" WHERE u."id" = $1 AND $2::text IS NOT NULL"""

RECORDS_SQL: dict[str, str] = {
    "user_accounts": PROFILE_SQL,
    "user_subscriptions": """
        SELECT s."id", p."name" AS "plan", s."status", s."starts_at", s."ends_at", s."created_at"
        FROM "user_subscriptions" s JOIN "subscription_plans" p ON p."id" = s."plan_id"
        WHERE s."user_id" = $1 AND $2::text IS NOT NULL ORDER BY s."created_at\"""",
    "sessions": """
        SELECT "id", "ip", "user_agent", "created_at", "last_used_at", "expires_at", "revoked_at", "revoke_reason"
        FROM "sessions" WHERE "user_id" = $1 AND $2::text IS NOT NULL ORDER BY "created_at\"""",
    "tokens": """
        SELECT "id", "session_id", "created_at", "expires_at", "rotated_at", "revoked_at"
        FROM "tokens" WHERE "user_id" = $1 AND $2::text IS NOT NULL ORDER BY "created_at\"""",
    "revoked_access_tokens": """
        SELECT "session_id", "reason", "revoked_at", "expires_at"
        FROM "revoked_access_tokens" WHERE "user_id" = $1 AND $2::text IS NOT NULL ORDER BY "revoked_at\"""",
    "account_tokens": """
        SELECT "id", "purpose", "created_at", "expires_at", "used_at"
        FROM "account_tokens" WHERE "user_id" = $1 AND $2::text IS NOT NULL ORDER BY "created_at\"""",
    "mfa_totp": """
        SELECT "created_at", "confirmed_at" FROM "mfa_totp" WHERE "user_id" = $1 AND $2::text IS NOT NULL""",
    "mfa_recovery_codes": """
        SELECT "created_at", "used_at" FROM "mfa_recovery_codes" WHERE "user_id" = $1 AND $2::text IS NOT NULL
        ORDER BY "id\"""",
    "mfa_tokens": """
        SELECT "created_at", "expires_at", "used_at", "failures"
        FROM "mfa_tokens" WHERE "user_id" = $1 AND $2::text IS NOT NULL ORDER BY "created_at\"""",
    "login_sources": """
        SELECT "source", "last_login_at" FROM "login_sources" WHERE "user_id" = $1 AND $2::text IS NOT NULL""",
    "account_source_locks": """
        SELECT "source", "locked_until" FROM "account_source_locks" WHERE "user_id" = $1 AND $2::text IS NOT NULL""",
    "login_attempts": """
        SELECT "created_at", "success", "reason", "ip", "user_agent" FROM "login_attempts"
        WHERE "user_id" = $1 OR "email" = $2 ORDER BY "created_at\"""",
    "outbox": """
        SELECT "kind", "subject", "recipient", "created_at", "sent_at", "discarded_at", "dead_at" FROM "outbox"
        WHERE "channel" = 'mail' AND ("user_id" = $1 OR LOWER("recipient") = $2)
        UNION ALL
        SELECT "kind", "subject", NULL, "created_at", "sent_at", "discarded_at", "dead_at" FROM "outbox"
        WHERE "channel" = 'webhook' AND "user_id" = $1 ORDER BY 4""",
    "email_changes": """
        SELECT "old_email", "new_email", "requested_at", "confirmed_at", "revert_until", "cancelled_at", "reverted_at"
        FROM "email_changes" WHERE "user_id" = $1 AND $2::text IS NOT NULL ORDER BY "requested_at\"""",
    "webauthn_credentials": """
        SELECT "id", "name", "created_at", "last_used_at", "backed_up", "sign_count"
        FROM "webauthn_credentials" WHERE "user_id" = $1 AND $2::text IS NOT NULL ORDER BY "created_at\"""",
    "webauthn_challenges": """
        SELECT "purpose", "created_at", "expires_at", "used_at"
        FROM "webauthn_challenges" WHERE "user_id" = $1 AND $2::text IS NOT NULL ORDER BY "created_at\"""",
    "webhook_sequences": """
        SELECT "seq" FROM "webhook_sequences" WHERE "user_id" = $1 AND $2::text IS NOT NULL""",
    "rate_limit_logs": """
        SELECT "policy", "window_start", "blocked_count", "first_blocked_at", "last_blocked_at"
        FROM "rate_limit_logs" WHERE "key" = 'u:' || $1::text AND $2::text IS NOT NULL ORDER BY "window_start\"""",
    "audit_logs": _audit("audit_logs"),
    "audit_logs_archive": _audit("audit_logs_archive"),
}

EXPORTS_TODAY_SQL = """
    SELECT count(*) AS "n", min("created_at") + interval '1 day' - clock_timestamp() AS "wait"
    FROM "audit_logs" WHERE "target_user_id" = $1 AND "action" = $2
      AND "created_at" > clock_timestamp() - interval '1 day'"""


class TableRecords(NamedTuple):
    """One table's rows about the user: column names, and each row's values in that order."""

    table: str
    rows: list[tuple[tuple[str, object], ...]]


async def records(*, conn: BaseDBAsyncClient, user_id: str, email: str) -> list[TableRecords]:
    """Every RECORDS_SQL statement's rows, table by table."""
    return [
        TableRecords(table, [tuple(row.items()) for row in await conn.execute_query_dict(sql, [user_id, email])])
        for table, sql in RECORDS_SQL.items()
    ]


async def exports_today(*, conn: BaseDBAsyncClient, user_id: str, action: str) -> tuple[int, float]:
    """(exports in the last 24 hours, seconds until the oldest of them is 24 hours old)."""
    rows = await conn.execute_query_dict(EXPORTS_TODAY_SQL, [user_id, action])
    wait = rows[0]["wait"]
    return int(rows[0]["n"]), wait.total_seconds() if wait is not None else 0.0
