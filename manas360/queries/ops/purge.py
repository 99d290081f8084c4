"""Purging deleted accounts on a raw asyncpg connection: user_accounts (the due rows, locked,
then a tombstone), every table that holds a user's records (sessions, tokens,
revoked_access_tokens, account_tokens, mfa_*, login_sources, account_source_locks,
user_subscriptions, email_changes, login_attempts, outbox, rate_limit_logs), the audit
trail (audit_logs, audit_logs_archive: personal values erased, rows kept) and erasure_ledger.

Each function runs one statement on the batch's transaction; `$1` is always the batch's
user ids (uuid[]), `$2` their addresses (lower-case, text[]) where a table holds addresses
without an id."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import asyncpg

# Row lock, then the re-check: FOR UPDATE re-evaluates the WHERE on the row as committed
# when the lock is granted, so a cancel that committed first leaves it out; a row held by a
# cancel in flight is skipped (the next run, or the next batch, sees how that ended).
PICK_DUE_SQL = """
    SELECT "id", "email", "display_name" FROM "user_accounts"
    WHERE "status" = 'pending_deletion' AND "deleted_at" IS NULL AND "deletion_at" <= clock_timestamp()
    ORDER BY "deletion_at", "id" LIMIT $1 FOR UPDATE SKIP LOCKED"""

# By an erasure replayed from the ledger: these ids whatever their state (they were erased once).
PICK_LISTED_SQL = """
    SELECT "id", "email", "display_name" FROM "user_accounts"
    WHERE "id" = ANY($1::uuid[]) AND "deleted_at" IS NULL ORDER BY "id" FOR UPDATE"""

SESSION_IDS_SQL = 'SELECT "user_id", "id" FROM "sessions" WHERE "user_id" = ANY($1::uuid[])'
JTIS_SQL = 'SELECT "user_id", "jti" FROM "revoked_access_tokens" WHERE "user_id" = ANY($1::uuid[])'
SOURCES_SQL = """
    SELECT "user_id", "source" FROM "login_sources" WHERE "user_id" = ANY($1::uuid[])
    UNION SELECT "user_id", "source" FROM "account_source_locks" WHERE "user_id" = ANY($1::uuid[])"""

# Every table whose rows are the user's own: deleted (order: children before parents).
DELETE_OWN_ROWS = (
    ("passkeys deleted", 'DELETE FROM "webauthn_credentials" WHERE "user_id" = ANY($1::uuid[])'),
    ("passkey challenges deleted", 'DELETE FROM "webauthn_challenges" WHERE "user_id" = ANY($1::uuid[])'),
    ("mails and webhook events deleted", 'DELETE FROM "outbox" WHERE "user_id" = ANY($1::uuid[])'),
    (
        "mails to the address deleted",
        # (any user's row: a mail to this address is about this person; $1 is unused but typed)
        """DELETE FROM "outbox" WHERE "channel" = 'mail' AND LOWER("recipient") = ANY($2::text[])
           AND cardinality($1::uuid[]) > 0""",
    ),
    ("refresh tokens deleted", 'DELETE FROM "tokens" WHERE "user_id" = ANY($1::uuid[])'),
    ("sessions deleted", 'DELETE FROM "sessions" WHERE "user_id" = ANY($1::uuid[])'),
    ("revoked access tokens deleted", 'DELETE FROM "revoked_access_tokens" WHERE "user_id" = ANY($1::uuid[])'),
    ("one-time links deleted", 'DELETE FROM "account_tokens" WHERE "user_id" = ANY($1::uuid[])'),
    ("TOTP secrets deleted", 'DELETE FROM "mfa_totp" WHERE "user_id" = ANY($1::uuid[])'),
    ("recovery codes deleted", 'DELETE FROM "mfa_recovery_codes" WHERE "user_id" = ANY($1::uuid[])'),
    ("MFA challenges deleted", 'DELETE FROM "mfa_tokens" WHERE "user_id" = ANY($1::uuid[])'),
    ("known sources deleted", 'DELETE FROM "login_sources" WHERE "user_id" = ANY($1::uuid[])'),
    ("source locks deleted", 'DELETE FROM "account_source_locks" WHERE "user_id" = ANY($1::uuid[])'),
    ("subscriptions (plan history) deleted", 'DELETE FROM "user_subscriptions" WHERE "user_id" = ANY($1::uuid[])'),
    (
        "email changes deleted",
        """DELETE FROM "email_changes" WHERE "user_id" = ANY($1::uuid[])
           OR LOWER("new_email") = ANY($2::text[]) OR LOWER("old_email") = ANY($2::text[])""",
    ),
    (
        "login attempts deleted",
        'DELETE FROM "login_attempts" WHERE "user_id" = ANY($1::uuid[]) OR "email" = ANY($2::text[])',
    ),
    (
        "rate-limit log rows deleted",
        """DELETE FROM "rate_limit_logs" WHERE "key" = ANY(SELECT 'u:' || u::text FROM unnest($1::uuid[]) u)""",
    ),
)

# The audit trail keeps every row, its user ids and actions; it loses the personal values
# (erase_personal, migration 10), and the address an entry by this person came from.
_BATCH = 'unnest($1::uuid[], $2::text[], $3::text[]) AS b("id", "email", "name")'
SCRUB_AUDIT_SQLS = tuple(
    sql
    for table in ("audit_logs", "audit_logs_archive")
    for sql in (
        # About them (and what they did to themselves: each row written once).
        f"""UPDATE "{table}" a SET "before" = erase_personal(a."before", b."email", b."name"),
                "after" = erase_personal(a."after", b."email", b."name"),
                "ip" = CASE WHEN a."actor_id" = b."id" THEN '' ELSE a."ip" END
            FROM {_BATCH} WHERE a."target_user_id" = b."id\"""",
        # What they did to others, or to no one in particular: their values and address go.
        f"""UPDATE "{table}" a SET "before" = erase_personal(a."before", b."email", b."name"),
                "after" = erase_personal(a."after", b."email", b."name"), "ip" = ''
            FROM {_BATCH} WHERE a."actor_id" = b."id" AND a."target_user_id" IS DISTINCT FROM b."id\"""",
        f"""UPDATE "{table}" a SET "after" = erase_personal(a."after", b."email", b."name")
            FROM {_BATCH} WHERE a."target_user_id" IS NULL AND LOWER(a."after" ->> 'email') = b."email\"""",
    )
)

# What stays of the account: its id (audit entries and the webhook sequence point at it),
# its role and dates; the address becomes one nobody can hold, the password unusable.
TOMBSTONE_SQL = """
    UPDATE "user_accounts" SET "email" = "id"::text || '@erased.invalid', "password_hash" = '!erased',
        "display_name" = '', "email_verified_at" = NULL, "mfa_enabled" = FALSE, "mfa_failures" = 0,
        "locked_until" = NULL, "last_login_at" = NULL, "deletion_cancel_hash" = NULL,
        "status_before_deletion" = NULL, "deleted_at" = clock_timestamp(), "updated_at" = now()
    WHERE "id" = ANY($1::uuid[])"""

LEDGER_SQL = """
    INSERT INTO "erasure_ledger" ("user_id") SELECT unnest($1::uuid[])
    ON CONFLICT ("user_id") DO NOTHING"""

AUDIT_PURGED_SQL = """
    INSERT INTO "audit_logs" ("actor_id", "target_user_id", "action", "after")
    SELECT NULL, u, $2, '{}'::jsonb FROM unnest($1::uuid[]) u"""

QUEUE_DELETED_SQL = """
    INSERT INTO "outbox" ("channel", "recipient", "subject", "payload_sealed", "kind", "user_id")
    SELECT 'webhook', m, $3, p, $3, u FROM unnest($1::uuid[], $2::text[], $4::bytea[]) AS x(u, m, p)"""

UNEXPORTED_SQL = """
    SELECT "user_id", "erased_at" FROM "erasure_ledger" WHERE "exported_at" IS NULL ORDER BY "erased_at", "user_id"
    LIMIT $1"""
MARK_EXPORTED_SQL = 'UPDATE "erasure_ledger" SET "exported_at" = clock_timestamp() WHERE "user_id" = ANY($1::uuid[])'
NOT_ERASED_SQL = """
    SELECT u FROM unnest($1::uuid[]) u
    WHERE EXISTS (SELECT 1 FROM "user_accounts" a WHERE a."id" = u AND a."deleted_at" IS NULL)
       OR NOT EXISTS (SELECT 1 FROM "erasure_ledger" l WHERE l."user_id" = u)"""

COLUMNS_REFERENCING_USERS_SQL = """
    SELECT c.conrelid::regclass::text AS "table", a.attname AS "column"
    FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
    WHERE c.contype = 'f' AND c.confrelid = 'user_accounts'::regclass
    UNION
    SELECT c.table_name, c.column_name FROM information_schema.columns c
    WHERE c.table_schema = 'public' AND c.data_type = 'uuid'
      AND (c.column_name LIKE '%user_id' OR c.column_name = 'actor_id')
      AND c.table_name NOT LIKE 'mv_%'
    ORDER BY 1, 2"""


class Due(NamedTuple):
    user_id: str
    email: str
    display_name: str


class Exportable(NamedTuple):
    user_id: str
    erased_at: datetime


NOW_SQL = "SELECT clock_timestamp()"


async def database_now(*, conn: asyncpg.Connection) -> datetime:
    now: datetime = await conn.fetchval(NOW_SQL)
    return now


async def pick_due(*, conn: asyncpg.Connection, limit: int) -> list[Due]:
    """Lock up to `limit` accounts whose grace is over (re-checked under the lock)."""
    rows = await conn.fetch(PICK_DUE_SQL, limit)
    return [Due(str(r["id"]), r["email"], r["display_name"]) for r in rows]


async def pick_listed(*, conn: asyncpg.Connection, user_ids: list[str]) -> list[Due]:
    """Lock these accounts, if not erased yet (a ledger replay)."""
    rows = await conn.fetch(PICK_LISTED_SQL, user_ids)
    return [Due(str(r["id"]), r["email"], r["display_name"]) for r in rows]


async def session_ids(*, conn: asyncpg.Connection, user_ids: list[str]) -> list[tuple[str, str]]:
    return [(str(r["user_id"]), str(r["id"])) for r in await conn.fetch(SESSION_IDS_SQL, user_ids)]


async def revoked_jtis(*, conn: asyncpg.Connection, user_ids: list[str]) -> list[tuple[str, str]]:
    return [(str(r["user_id"]), str(r["jti"])) for r in await conn.fetch(JTIS_SQL, user_ids)]


async def sources(*, conn: asyncpg.Connection, user_ids: list[str]) -> list[tuple[str, str]]:
    return [(str(r["user_id"]), r["source"]) for r in await conn.fetch(SOURCES_SQL, user_ids)]


async def delete_own_rows(*, conn: asyncpg.Connection, user_ids: list[str], emails: list[str]) -> dict[str, int]:
    """Every DELETE_OWN_ROWS statement; rows deleted by each."""
    counts = {}
    for what, sql in DELETE_OWN_ROWS:
        args: list[object] = [user_ids, emails] if "$2" in sql else [user_ids]
        status = await conn.execute(sql, *args)
        counts[what] = int(status.split()[-1])
    return counts


async def scrub_audit(*, conn: asyncpg.Connection, user_ids: list[str], emails: list[str], names: list[str]) -> int:
    total = 0
    for sql in SCRUB_AUDIT_SQLS:
        total += int((await conn.execute(sql, user_ids, emails, names)).split()[-1])
    return total


async def tombstone(*, conn: asyncpg.Connection, user_ids: list[str]) -> None:
    await conn.execute(TOMBSTONE_SQL, user_ids)


async def add_to_ledger(*, conn: asyncpg.Connection, user_ids: list[str]) -> None:
    await conn.execute(LEDGER_SQL, user_ids)


async def audit_purged(*, conn: asyncpg.Connection, user_ids: list[str], action: str) -> None:
    await conn.execute(AUDIT_PURGED_SQL, user_ids, action)


async def queue_deleted(
    *, conn: asyncpg.Connection, user_ids: list[str], message_ids: list[str], kind: str, payloads: list[bytes]
) -> None:
    """One `user.deleted` webhook row per user (sealed payloads, in the same order)."""
    await conn.execute(QUEUE_DELETED_SQL, user_ids, message_ids, kind, payloads)


async def unexported(*, conn: asyncpg.Connection, limit: int) -> list[Exportable]:
    return [Exportable(str(r["user_id"]), r["erased_at"]) for r in await conn.fetch(UNEXPORTED_SQL, limit)]


async def mark_exported(*, conn: asyncpg.Connection, user_ids: list[str]) -> None:
    await conn.execute(MARK_EXPORTED_SQL, user_ids)


async def not_erased(*, conn: asyncpg.Connection, user_ids: list[str]) -> list[str]:
    """Of these ids, those this database has not erased (a restore from before their purge)."""
    return [str(r["u"]) for r in await conn.fetch(NOT_ERASED_SQL, user_ids)]


async def columns_referencing_users(*, conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(table, column) of every foreign key to user_accounts and every user-id column, from the catalog."""
    return [(r["table"], r["column"]) for r in await conn.fetch(COLUMNS_REFERENCING_USERS_SQL)]
