"""The account's life: user_accounts (a scheduled deletion and its cancel), email_changes (a
change of address, its two links and its revert window), and what a revert takes back
(mfa_totp, mfa_recovery_codes added since the request).

Every time that decides validity is the database's clock (`clock_timestamp()`)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

SCHEDULE_DELETION_SQL = """
    UPDATE "user_accounts" SET "status_before_deletion" = "status", "status" = 'pending_deletion',
        "deletion_requested_at" = clock_timestamp(),
        "deletion_at" = clock_timestamp() + make_interval(secs => $2),
        "deletion_cancel_hash" = $3, "updated_at" = now()
    WHERE "id" = $1 AND "deleted_at" IS NULL AND "status" <> 'pending_deletion'
    RETURNING "deletion_at\""""

# The owner's cancel: the link's account, while its grace runs (the purge takes it after).
FIND_DELETION_CANCEL_SQL = """
    SELECT "id" FROM "user_accounts" WHERE "deletion_cancel_hash" = $1 AND "status" = 'pending_deletion'
    AND "deleted_at" IS NULL AND "deletion_at" > clock_timestamp()"""

# Under the user row lock: back to the status before, if the deletion is still pending and
# (for the owner's cancel, $2 not NULL) the link is still this account's and the grace runs.
CANCEL_DELETION_SQL = """
    UPDATE "user_accounts" SET "status" = COALESCE("status_before_deletion", 'active'),
        "status_before_deletion" = NULL, "deletion_requested_at" = NULL, "deletion_at" = NULL,
        "deletion_cancel_hash" = NULL, "updated_at" = now()
    WHERE "id" = $1 AND "status" = 'pending_deletion' AND "deleted_at" IS NULL
      AND ($2::char(64) IS NULL OR ("deletion_cancel_hash" = $2 AND "deletion_at" > clock_timestamp()))
    RETURNING "status\""""

DELETION_STATE_SQL = (
    'SELECT "status_before_deletion", "deletion_at", "deletion_cancel_hash" IS NOT NULL AS "owner_cancellable" '
    'FROM "user_accounts" WHERE "id" = $1'
)


class DeletionState(NamedTuple):
    status_before: str | None
    deletion_at: datetime | None
    owner_cancellable: bool


async def schedule_deletion(
    *, conn: BaseDBAsyncClient, user_id: str, grace_s: int, cancel_hash: str | None
) -> datetime | None:
    """Mark the live account pending deletion (its status kept for a cancel); when it will be
    erased, or None if it was already pending."""
    rows = await conn.execute_query_dict(SCHEDULE_DELETION_SQL, [user_id, grace_s, cancel_hash])
    return rows[0]["deletion_at"] if rows else None


async def find_deletion_cancel(*, conn: BaseDBAsyncClient, cancel_hash: str) -> str | None:
    """The pending account a cancel link belongs to, while its grace runs; reads only."""
    rows = await conn.execute_query_dict(FIND_DELETION_CANCEL_SQL, [cancel_hash])
    return str(rows[0]["id"]) if rows else None


async def cancel_deletion(*, conn: BaseDBAsyncClient, user_id: str, cancel_hash: str | None) -> str | None:
    """Restore the status before the deletion; the status restored, or None when nothing was
    pending (or the link no longer matches)."""
    rows = await conn.execute_query_dict(CANCEL_DELETION_SQL, [user_id, cancel_hash])
    return str(rows[0]["status"]) if rows else None


async def deletion_state(*, conn: BaseDBAsyncClient, user_id: str) -> DeletionState | None:
    rows = await conn.execute_query_dict(DELETION_STATE_SQL, [user_id])
    if not rows:
        return None
    row = rows[0]
    return DeletionState(row["status_before_deletion"], row["deletion_at"], bool(row["owner_cancellable"]))


# --- email change ---------------------------------------------------------------------------

# Another live account holds the address, or it is an old address still reserved for the
# account that left it (its revert window is open).
ADDRESS_TAKEN_SQL = """
    SELECT EXISTS (SELECT 1 FROM "user_accounts" WHERE LOWER("email") = $1 AND "deleted_at" IS NULL AND "id" <> $2)
        OR EXISTS (SELECT 1 FROM "email_changes" WHERE LOWER("old_email") = $1 AND "user_id" <> $2
                   AND "confirmed_at" IS NOT NULL AND "reverted_at" IS NULL AND "revert_until" > clock_timestamp())
        AS "taken\""""

OPEN_REVERT_WINDOW_SQL = """
    SELECT EXISTS (SELECT 1 FROM "email_changes" WHERE "user_id" = $1 AND "confirmed_at" IS NOT NULL
                   AND "reverted_at" IS NULL AND "revert_until" > clock_timestamp()) AS "open\""""

# A new request supersedes an unconfirmed one (its confirm link dies; its cancel link has
# nothing left to cancel).
SUPERSEDE_SQL = """
    UPDATE "email_changes" SET "cancelled_at" = clock_timestamp()
    WHERE "user_id" = $1 AND "confirmed_at" IS NULL AND "cancelled_at" IS NULL"""

INSERT_EMAIL_CHANGE_SQL = """
    INSERT INTO "email_changes" ("user_id", "old_email", "new_email", "password_version", "confirm_hash",
        "confirm_expires_at", "cancel_hash", "cancel_expires_at")
    VALUES ($1, $2, $3, $4, $5, clock_timestamp() + make_interval(secs => $6), $7,
            clock_timestamp() + make_interval(secs => $6 + $8))
    RETURNING "id\""""

# The change a confirm link (already consumed as an account token: live, unused, not voided)
# belongs to, if it is still open.
FIND_CONFIRM_SQL = """
    SELECT c."id", c."user_id", c."new_email" FROM "email_changes" c
    WHERE c."confirm_hash" = $1 AND c."confirmed_at" IS NULL AND c."cancelled_at" IS NULL
      AND c."confirm_expires_at" > clock_timestamp()"""

MAILS_TO_RECIPIENT_SQL = """
    SELECT count(*) AS "mails" FROM "outbox" WHERE "channel" = 'mail' AND LOWER("recipient") = $1
    AND "created_at" > clock_timestamp() - interval '1 hour'"""

RESERVED_SQL = """
    SELECT EXISTS (SELECT 1 FROM "email_changes" WHERE LOWER("old_email") = $1 AND "confirmed_at" IS NOT NULL
                   AND "reverted_at" IS NULL AND "revert_until" > clock_timestamp()) AS "reserved\""""

MARK_CONFIRMED_SQL = """
    UPDATE "email_changes" SET "confirmed_at" = clock_timestamp(),
        "revert_until" = clock_timestamp() + make_interval(secs => $2)
    WHERE "id" = $1 AND "confirmed_at" IS NULL AND "cancelled_at" IS NULL RETURNING "id\""""

SET_EMAIL_SQL = """
    UPDATE "user_accounts" SET "email" = $2, "email_verified_at" = clock_timestamp(), "updated_at" = now()
    WHERE "id" = $1 AND "deleted_at" IS NULL RETURNING "id\""""

# The cancel link: valid for the change's life (no security event voids it).
FIND_CANCEL_SQL = """
    SELECT "id", "user_id", "old_email", "new_email", "requested_at", "password_version", "confirmed_at",
        "confirm_hash"
    FROM "email_changes" WHERE "cancel_hash" = $1 AND "cancelled_at" IS NULL AND "reverted_at" IS NULL
      AND "cancel_expires_at" > clock_timestamp()
      AND ("confirmed_at" IS NULL OR "revert_until" > clock_timestamp())"""

CANCEL_CHANGE_SQL = """
    UPDATE "email_changes" SET "cancelled_at" = clock_timestamp()
    WHERE "id" = $1 AND "confirmed_at" IS NULL AND "cancelled_at" IS NULL RETURNING "id\""""

MARK_REVERTED_SQL = """
    UPDATE "email_changes" SET "reverted_at" = clock_timestamp()
    WHERE "id" = $1 AND "confirmed_at" IS NOT NULL AND "reverted_at" IS NULL AND "revert_until" > clock_timestamp()
    RETURNING "id\""""

# What a revert takes back: factors added after the request.
REMOVE_TOTP_SINCE_SQL = 'DELETE FROM "mfa_totp" WHERE "user_id" = $1 AND "created_at" >= $2'
REMOVE_RECOVERY_CODES_SINCE_SQL = 'DELETE FROM "mfa_recovery_codes" WHERE "user_id" = $1 AND "created_at" >= $2'
SYNC_MFA_FLAG_SQL = """
    UPDATE "user_accounts" u SET "mfa_enabled" = EXISTS (
        SELECT 1 FROM "mfa_totp" t WHERE t."user_id" = u."id" AND t."confirmed_at" IS NOT NULL)
    WHERE u."id" = $1"""
REMOVE_PASSKEYS_SINCE_SQL = 'DELETE FROM "webauthn_credentials" WHERE "user_id" = $1 AND "created_at" >= $2'
REMOVED_SINCE_SQLS = (REMOVE_TOTP_SINCE_SQL, REMOVE_RECOVERY_CODES_SINCE_SQL, REMOVE_PASSKEYS_SINCE_SQL)

# A password set after the request: no password matches this hash (bcrypt never outputs it),
# so the owner must take the reset link the revert mails.
DISABLE_PASSWORD_SQL = """
    UPDATE "user_accounts" SET "password_hash" = '!revoked', "password_version" = "password_version" + 1
    WHERE "id" = $1 AND "password_version" <> $2 RETURNING "id\""""


class Confirm(NamedTuple):
    id: int
    user_id: str
    new_email: str


class Cancel(NamedTuple):
    id: int
    user_id: str
    old_email: str
    new_email: str
    requested_at: datetime
    password_version: int
    confirmed: bool
    confirm_hash: str


async def address_taken(*, conn: BaseDBAsyncClient, email: str, user_id: str) -> bool:
    """Whether another account holds (or has reserved) the normalised address."""
    rows = await conn.execute_query_dict(ADDRESS_TAKEN_SQL, [email, user_id])
    return bool(rows[0]["taken"])


LOCK_ADDRESS_SQL = "SELECT pg_advisory_xact_lock(hashtext('manas360.address:' || $1))"


async def lock_address(*, conn: BaseDBAsyncClient, email: str) -> None:
    """Serialise, until the transaction ends, every writer that takes or reserves this address
    (a registration, an email change's confirm), so a reservation is never raced past."""
    await conn.execute_query(LOCK_ADDRESS_SQL, [email])


async def mails_to_recipient_this_hour(*, conn: BaseDBAsyncClient, email: str) -> int:
    """Mails queued to this (normalised) address in the last hour, whatever the account."""
    rows = await conn.execute_query_dict(MAILS_TO_RECIPIENT_SQL, [email])
    return int(rows[0]["mails"])


async def address_reserved(*, conn: BaseDBAsyncClient, email: str) -> bool:
    """Whether the address is an old one kept for the account that left it (its revert window)."""
    rows = await conn.execute_query_dict(RESERVED_SQL, [email])
    return bool(rows[0]["reserved"])


async def revert_window_open(*, conn: BaseDBAsyncClient, user_id: str) -> bool:
    rows = await conn.execute_query_dict(OPEN_REVERT_WINDOW_SQL, [user_id])
    return bool(rows[0]["open"])


async def supersede_pending(*, conn: BaseDBAsyncClient, user_id: str) -> int:
    updated, _ = await conn.execute_query(SUPERSEDE_SQL, [user_id])
    return int(updated)


async def insert_email_change(
    *,
    conn: BaseDBAsyncClient,
    user_id: str,
    old_email: str,
    new_email: str,
    password_version: int,
    confirm_hash: str,
    cancel_hash: str,
    ttl_s: int,
    revert_s: int,
) -> int:
    rows = await conn.execute_query_dict(
        INSERT_EMAIL_CHANGE_SQL,
        [user_id, old_email, new_email, password_version, confirm_hash, ttl_s, cancel_hash, revert_s],
    )
    change_id: int = rows[0]["id"]
    return change_id


async def find_confirm(*, conn: BaseDBAsyncClient, confirm_hash: str) -> Confirm | None:
    rows = await conn.execute_query_dict(FIND_CONFIRM_SQL, [confirm_hash])
    if not rows:
        return None
    row = rows[0]
    return Confirm(row["id"], str(row["user_id"]), row["new_email"])


async def mark_confirmed(*, conn: BaseDBAsyncClient, change_id: int, revert_s: int) -> bool:
    return bool(await conn.execute_query_dict(MARK_CONFIRMED_SQL, [change_id, revert_s]))


async def set_email(*, conn: BaseDBAsyncClient, user_id: str, email: str) -> bool:
    """Set the (normalised) address, verified now; the live-email unique index refuses a taken one."""
    return bool(await conn.execute_query_dict(SET_EMAIL_SQL, [user_id, email]))


async def find_cancel(*, conn: BaseDBAsyncClient, cancel_hash: str) -> Cancel | None:
    rows = await conn.execute_query_dict(FIND_CANCEL_SQL, [cancel_hash])
    if not rows:
        return None
    row = rows[0]
    return Cancel(
        row["id"],
        str(row["user_id"]),
        row["old_email"],
        row["new_email"],
        row["requested_at"],
        row["password_version"],
        row["confirmed_at"] is not None,
        row["confirm_hash"],
    )


async def cancel_change(*, conn: BaseDBAsyncClient, change_id: int) -> bool:
    return bool(await conn.execute_query_dict(CANCEL_CHANGE_SQL, [change_id]))


async def mark_reverted(*, conn: BaseDBAsyncClient, change_id: int) -> bool:
    return bool(await conn.execute_query_dict(MARK_REVERTED_SQL, [change_id]))


async def remove_factors_since(*, conn: BaseDBAsyncClient, user_id: str, since: datetime) -> int:
    """Remove every second factor added at or after `since`; MFA stays on only if a confirmed
    TOTP from before remains. The rows removed."""
    removed = 0
    for sql in REMOVED_SINCE_SQLS:
        updated, _ = await conn.execute_query(sql, [user_id, since])
        removed += int(updated)
    await conn.execute_query(SYNC_MFA_FLAG_SQL, [user_id])
    return removed


async def disable_password_if_changed(*, conn: BaseDBAsyncClient, user_id: str, version: int) -> bool:
    """Make the password unusable when it was changed since `version`; whether it was."""
    return bool(await conn.execute_query_dict(DISABLE_PASSWORD_SQL, [user_id, version]))
