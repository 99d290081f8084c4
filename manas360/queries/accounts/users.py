"""User accounts: user_accounts with its role and effective plan, credentials, the token epoch."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries.access.subscriptions import ACTIVE_PLAN_JOIN

# The user, their role and their effective plan: the active subscription's plan, or free
# when there is none or it has ended (`ends_at` past), at once and with no job running.
USER_SQL = f"""
    SELECT u."id", u."email", u."display_name", u."created_at", r."name" AS "role", r."privilege_level",
           COALESCE(p."name", 'free') AS "plan", s."status" AS "subscription_status", s."ends_at",
           u."status", u."email_verified_at" IS NOT NULL AS "email_verified", u."mfa_enabled",
           u."tokens_valid_after"
    FROM "user_accounts" u
    JOIN "roles" r ON r."id" = u."role_id"
    {ACTIVE_PLAN_JOIN}
    WHERE u."deleted_at" IS NULL AND {{where}}"""
USER_BY_ID_SQL = USER_SQL.format(where='u."id" = $1')

# What a credential check and the gate need of an account, by address or id. `source` is the
# client's lockout source (IPv4 address or IPv6 prefix): its durable lock and whether the
# account completed a login from it within $3 seconds (a known source).
CREDENTIALS_SQL = """
    SELECT u."id", u."email", u."password_hash", u."password_version", u."status",
           u."email_verified_at" IS NOT NULL AS "email_verified", u."mfa_enabled", u."mfa_failures",
           GREATEST(0, CEIL(EXTRACT(EPOCH FROM u."locked_until" - clock_timestamp()) * 1000))::bigint AS "lock_ms",
           COALESCE((SELECT GREATEST(0, CEIL(EXTRACT(EPOCH FROM l."locked_until" - clock_timestamp()) * 1000))::bigint
                     FROM "account_source_locks" l WHERE l."user_id" = u."id" AND l."source" = $2), 0)
               AS "source_lock_ms",
           EXISTS (SELECT 1 FROM "login_sources" k WHERE k."user_id" = u."id" AND k."source" = $2
                   AND k."last_login_at" > clock_timestamp() - make_interval(secs => $3)) AS "known_source"
    FROM "user_accounts" u WHERE {where} AND u."deleted_at" IS NULL"""
CREDENTIALS_BY_EMAIL_SQL = CREDENTIALS_SQL.format(where='LOWER(u."email") = $1')
CREDENTIALS_BY_ID_SQL = CREDENTIALS_SQL.format(where='u."id" = $1')
LOCK_CREDENTIALS_SQL = CREDENTIALS_SQL.format(where='u."id" = $1') + " FOR NO KEY UPDATE OF u"
LOCK_USER_ROW_SQL = 'SELECT 1 FROM "user_accounts" WHERE "id" = $1 AND "deleted_at" IS NULL FOR NO KEY UPDATE'
# A re-hash at a new cost keeps the version; a new password moves it. Both compare-and-set on
# the version the check saw, so a re-hash never passes for a change, nor undoes one.
REHASH_PASSWORD_SQL = 'UPDATE "user_accounts" SET "password_hash" = $3 WHERE "id" = $1 AND "password_version" = $2'
SET_PASSWORD_SQL = (
    'UPDATE "user_accounts" SET "password_hash" = $3, "password_version" = "password_version" + 1, '
    '"updated_at" = now() WHERE "id" = $1 AND "password_version" = $2'
)
INSERT_USER_SQL = (
    'INSERT INTO "user_accounts" ("id", "email", "password_hash", "display_name", "role_id") '
    'SELECT $1, $2, $3, $4, "id" FROM "roles" WHERE "name" = $5'
)
UPDATE_DISPLAY_NAME_SQL = (
    'UPDATE "user_accounts" SET "display_name" = $2, "updated_at" = now() WHERE "id" = $1 AND "deleted_at" IS NULL'
)
MOVE_TOKEN_EPOCH_SQL = (
    'UPDATE "user_accounts" SET "tokens_valid_after" = '
    'GREATEST("tokens_valid_after", date_trunc(\'milliseconds\', clock_timestamp())), "updated_at" = now() '
    'WHERE "id" = $1 RETURNING "tokens_valid_after"'
)
TOUCH_LAST_LOGIN_SQL = 'UPDATE "user_accounts" SET "last_login_at" = $2 WHERE "id" = $1'


class UserRow(NamedTuple):
    """A live user as USER_SQL reads them: with role and effective plan."""

    id: uuid.UUID
    email: str
    display_name: str
    created_at: datetime
    role: str
    privilege_level: int
    plan: str
    subscription_status: str | None
    ends_at: datetime | None
    status: str
    email_verified: bool
    mfa_enabled: bool
    tokens_valid_after: datetime


async def fetch_user(*, conn: BaseDBAsyncClient, user_id: str) -> UserRow | None:
    """The live user's USER_SQL row (role, effective plan), or None."""
    rows = await conn.execute_query_dict(USER_BY_ID_SQL, [user_id])
    return UserRow(**rows[0]) if rows else None


class Credentials(NamedTuple):
    """What a credential check and the gate need to know about an account (CREDENTIALS_SQL)."""

    user_id: str
    email: str
    password_hash: str
    password_version: int
    """Moved by every real password change; a re-hash at a new cost keeps it."""
    status: str
    email_verified: bool
    mfa_enabled: bool
    mfa_failures: int
    """Wrong second-factor codes in a row since the last accepted one."""
    lock_ms: int
    """Milliseconds left on the account-wide lock (`locked_until`, the database's clock)."""
    source_lock_ms: int
    """Milliseconds left on this source's lock."""
    known_source: bool
    """The account completed a login from this source recently (spared the account-wide lock)."""


def _credentials(row: dict[str, Any]) -> Credentials:
    return Credentials(
        str(row["id"]),
        row["email"],
        row["password_hash"],
        row["password_version"],
        row["status"],
        row["email_verified"],
        row["mfa_enabled"],
        row["mfa_failures"],
        int(row["lock_ms"] or 0),
        int(row["source_lock_ms"] or 0),
        row["known_source"],
    )


async def fetch_credentials(
    *, conn: BaseDBAsyncClient, source: str, known_source_s: int, email: str | None = None, user_id: str | None = None
) -> Credentials | None:
    """The live account's credentials by normalised address (or by id when `user_id` is given),
    as seen from `source`."""
    sql, value = (CREDENTIALS_BY_EMAIL_SQL, email) if user_id is None else (CREDENTIALS_BY_ID_SQL, user_id)
    rows = await conn.execute_query_dict(sql, [value, source, known_source_s])
    return _credentials(rows[0]) if rows else None


async def lock_credentials(
    *, conn: BaseDBAsyncClient, user_id: str, source: str, known_source_s: int
) -> Credentials | None:
    """Lock the user row (FOR NO KEY UPDATE) and read its credentials as they are now."""
    rows = await conn.execute_query_dict(LOCK_CREDENTIALS_SQL, [user_id, source, known_source_s])
    return _credentials(rows[0]) if rows else None


async def lock_user_row(*, conn: BaseDBAsyncClient, user_id: str) -> bool:
    """Lock the live user's row (FOR NO KEY UPDATE); False when there is none."""
    rows = await conn.execute_query_dict(LOCK_USER_ROW_SQL, [user_id])
    return bool(rows)


async def rehash_password(*, conn: BaseDBAsyncClient, user_id: str, version: int, new_hash: str) -> bool:
    """The same password at a new cost, if the password is still at `version`; the version stays."""
    updated, _ = await conn.execute_query(REHASH_PASSWORD_SQL, [user_id, version, new_hash])
    return bool(updated)


async def set_password(*, conn: BaseDBAsyncClient, user_id: str, version: int, new_hash: str) -> bool:
    """A new password, if the password is still at `version` (compare-and-set); the version moves."""
    updated, _ = await conn.execute_query(SET_PASSWORD_SQL, [user_id, version, new_hash])
    return bool(updated)


async def insert_user(
    *, conn: BaseDBAsyncClient, user_id: str, email: str, password_hash: str, display_name: str, role: str
) -> None:
    """Insert an account with `role` (IntegrityError from the unique index when the address is taken)."""
    await conn.execute_query(INSERT_USER_SQL, [user_id, email, password_hash, display_name, role])


async def update_display_name(*, conn: BaseDBAsyncClient, user_id: str, display_name: str) -> bool:
    """Set the live user's display name; False when there is no such user."""
    updated, _ = await conn.execute_query(UPDATE_DISPLAY_NAME_SQL, [user_id, display_name])
    return bool(updated)


async def move_token_epoch(*, conn: BaseDBAsyncClient, user_id: str) -> datetime | None:
    """Move tokens_valid_after to clock_timestamp() in whole ms (never backwards); the stored value."""
    rows = await conn.execute_query_dict(MOVE_TOKEN_EPOCH_SQL, [user_id])
    epoch: datetime | None = rows[0]["tokens_valid_after"]
    return epoch


async def touch_last_login(*, conn: BaseDBAsyncClient, user_id: str, now: datetime) -> None:
    await conn.execute_query(TOUCH_LAST_LOGIN_SQL, [user_id, now])


MOVE_CREDENTIAL_EPOCH_SQL = (
    'UPDATE "user_accounts" SET "credential_epoch" = GREATEST("credential_epoch", clock_timestamp()) WHERE "id" = $1'
)


async def move_credential_epoch(*, conn: BaseDBAsyncClient, user_id: str) -> None:
    """Kill every one-time token of the user created until now (reset, verification, mfa_token):
    each is live only while created after `credential_epoch`."""
    await conn.execute_query(MOVE_CREDENTIAL_EPOCH_SQL, [user_id])
