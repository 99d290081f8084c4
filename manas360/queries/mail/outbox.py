"""The outbox: outbox (mail today, webhooks next). Queue in the caller's transaction; a
sender claims due rows, renews its lease on a row right before delivering it, and records
the delivery or the failure, every change after the claim a compare-and-set on its lease
token; pruning is a maintenance job."""

from __future__ import annotations

import uuid
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

CHANNEL = "outbox"
"""The PostgreSQL NOTIFY channel that wakes the senders when a row is queued."""

INSERT_SQL = (
    'INSERT INTO "outbox" ("channel", "recipient", "subject", "payload_sealed", "kind", "user_id", "token_id", '
    '"carries_token") VALUES ($1, $2, $3, $4, $5, $6, $7::bigint, $7::bigint IS NOT NULL) RETURNING "id"'
)
NOTIFY_SQL = f"SELECT pg_notify('{CHANNEL}', '')"

_PENDING = 'o."sent_at" IS NULL AND o."discarded_at" IS NULL AND o."dead_at" IS NULL'

# One statement, so one short transaction: the due rows this sender takes are locked (SKIP
# LOCKED: concurrent senders take other rows, never wait), stamped with this claim's lease
# token and leased by moving next_attempt_at past the lease. Rows older than the max age
# are not taken: the sender declares them dead (`mark_dead_letters`).
CLAIM_DUE_SQL = f"""
    WITH due AS (
        SELECT o."id" FROM "outbox" o
        WHERE {_PENDING} AND o."next_attempt_at" <= clock_timestamp()
          AND o."created_at" > clock_timestamp() - make_interval(secs => $4)
        ORDER BY o."next_attempt_at" LIMIT $1 FOR UPDATE SKIP LOCKED)
    UPDATE "outbox" o SET "lease_token" = $3, "next_attempt_at" = clock_timestamp() + make_interval(secs => $2)
    FROM due WHERE o."id" = due."id"
    RETURNING o."id", o."channel", o."recipient", o."subject", o."body", o."payload_sealed", o."kind",
              o."attempts\""""

# Right before a row is delivered: still ours (the lease token), leased afresh for one
# delivery, its attempt counted, and whether the token it carries is still live.
RENEW_SQL = f"""
    UPDATE "outbox" o SET "next_attempt_at" = clock_timestamp() + make_interval(secs => $3),
                          "attempts" = o."attempts" + 1
    WHERE o."id" = $1 AND o."lease_token" = $2 AND {_PENDING}
    RETURNING o."attempts", NOT o."carries_token" OR EXISTS (
        SELECT 1 FROM "account_tokens" t JOIN "user_accounts" u ON u."id" = t."user_id"
        WHERE t."id" = o."token_id" AND t."used_at" IS NULL AND t."expires_at" > clock_timestamp()
          AND (u."credential_epoch" IS NULL OR t."created_at" > u."credential_epoch")) AS "live\""""

# The body carries a live token: once delivered it is not kept.
MARK_SENT_SQL = (
    'UPDATE "outbox" SET "sent_at" = clock_timestamp(), "body" = NULL, "payload_sealed" = NULL, '
    '"last_error" = NULL WHERE "id" = $1 AND "lease_token" = $2 AND "sent_at" IS NULL RETURNING "id"'
)

MARK_FAILED_SQL = (
    'UPDATE "outbox" SET "last_error" = $3, "next_attempt_at" = clock_timestamp() + make_interval(secs => $4) '
    'WHERE "id" = $1 AND "lease_token" = $2 AND "sent_at" IS NULL'
)

DISCARD_SQL = (
    'UPDATE "outbox" SET "discarded_at" = clock_timestamp(), "body" = NULL, "payload_sealed" = NULL '
    'WHERE "id" = $1 AND "lease_token" = $2 AND "sent_at" IS NULL AND "discarded_at" IS NULL'
)

# A token used, voided or dropped: its mail, if not sent yet, is never sent and not kept.
DISCARD_FOR_TOKENS_SQL = f"""
    UPDATE "outbox" o SET "discarded_at" = clock_timestamp(), "body" = NULL, "payload_sealed" = NULL
    WHERE o."token_id" = ANY($1::bigint[]) AND {_PENDING}"""
DISCARD_FOR_USER_SQL = f"""
    UPDATE "outbox" o SET "discarded_at" = clock_timestamp(), "body" = NULL, "payload_sealed" = NULL
    WHERE o."user_id" = $1 AND o."carries_token" AND {_PENDING}"""

# Pending rows past the max age: given up, counted as dead letters.
MARK_DEAD_SQL = f"""
    UPDATE "outbox" o SET "dead_at" = clock_timestamp(), "body" = NULL, "payload_sealed" = NULL
    WHERE o."id" IN (SELECT o."id" FROM "outbox" o WHERE {_PENDING}
                     AND o."created_at" <= clock_timestamp() - make_interval(secs => $1)
                     ORDER BY o."created_at" LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING o."kind\""""

COUNTS_SQL = f"""
    SELECT count(*) FILTER (WHERE {_PENDING}) AS "pending", count(*) FILTER (WHERE o."dead_at" IS NOT NULL) AS "dead"
    FROM "outbox" o WHERE o."channel" = $1 AND ({_PENDING} OR o."dead_at" IS NOT NULL)"""


class Claimed(NamedTuple):
    """A row a sender leased, as it was at the claim."""

    id: int
    channel: str
    recipient: str
    subject: str
    body: str | None
    """The plain body of a row queued before bodies were sealed (migration 7), else None."""
    payload_sealed: bytes | None
    kind: str
    attempts: int


class Renewed(NamedTuple):
    attempts: int
    """This attempt's number (1 for the first)."""
    live: bool
    """False when the token the row carries is no longer live: discard it, do not send it."""


class Counts(NamedTuple):
    pending: int
    dead: int


async def insert(
    *,
    conn: BaseDBAsyncClient,
    channel: str,
    recipient: str,
    subject: str,
    payload_sealed: bytes,
    kind: str,
    user_id: str | None,
    token_id: int | None,
) -> int:
    """Queue one row in the caller's transaction (and wake the senders at its commit); its id."""
    rows = await conn.execute_query_dict(
        INSERT_SQL, [channel, recipient, subject, payload_sealed, kind, user_id, token_id]
    )
    await conn.execute_query(NOTIFY_SQL)
    row_id: int = rows[0]["id"]
    return row_id


async def notify(*, conn: BaseDBAsyncClient) -> None:
    """Wake the senders at the caller's commit (PostgreSQL LISTEN/NOTIFY)."""
    await conn.execute_query(NOTIFY_SQL)


async def claim_due(
    *, conn: BaseDBAsyncClient, limit: int, lease_s: float, lease_token: uuid.UUID, max_age_s: int
) -> list[Claimed]:
    """Lease up to `limit` due, pending rows younger than `max_age_s` for this sender."""
    rows = await conn.execute_query_dict(CLAIM_DUE_SQL, [limit, lease_s, lease_token, max_age_s])
    return [
        Claimed(
            row["id"],
            row["channel"],
            row["recipient"],
            row["subject"],
            row["body"],
            bytes(row["payload_sealed"]) if row["payload_sealed"] is not None else None,
            row["kind"],
            row["attempts"],
        )
        for row in rows
    ]


async def renew(*, conn: BaseDBAsyncClient, row_id: int, lease_token: uuid.UUID, lease_s: float) -> Renewed | None:
    """Lease a claimed row afresh for one delivery and count the attempt; None when it is not
    this sender's any more (another sender took it after the lease ran out, or it is done)."""
    rows = await conn.execute_query_dict(RENEW_SQL, [row_id, lease_token, lease_s])
    return Renewed(rows[0]["attempts"], rows[0]["live"]) if rows else None


async def mark_sent(*, conn: BaseDBAsyncClient, row_id: int, lease_token: uuid.UUID) -> bool:
    """Record the delivery (and drop the payload); False when the row was not this sender's."""
    return bool(await conn.execute_query_dict(MARK_SENT_SQL, [row_id, lease_token]))


async def mark_failed(
    *, conn: BaseDBAsyncClient, row_id: int, lease_token: uuid.UUID, error: str, retry_in_s: float
) -> None:
    """Record a failed attempt and when to try again (if the row is still this sender's)."""
    await conn.execute_query(MARK_FAILED_SQL, [row_id, lease_token, error[:500], retry_in_s])


async def discard(*, conn: BaseDBAsyncClient, row_id: int, lease_token: uuid.UUID) -> None:
    """The link a leased row carries is dead: never send it, drop its payload."""
    await conn.execute_query(DISCARD_SQL, [row_id, lease_token])


async def discard_for_tokens(*, conn: BaseDBAsyncClient, token_ids: list[int]) -> int:
    """Discard the pending mails carrying these tokens (used or dropped); how many."""
    updated, _ = await conn.execute_query(DISCARD_FOR_TOKENS_SQL, [token_ids])
    return int(updated)


async def discard_for_user(*, conn: BaseDBAsyncClient, user_id: str) -> int:
    """Discard every pending mail carrying a token of the user (a security event voided them)."""
    updated, _ = await conn.execute_query(DISCARD_FOR_USER_SQL, [user_id])
    return int(updated)


async def mark_dead(*, conn: BaseDBAsyncClient, max_age_s: int, limit: int) -> list[str]:
    """Give up on up to `limit` pending rows older than `max_age_s`; their kinds."""
    rows = await conn.execute_query_dict(MARK_DEAD_SQL, [max_age_s, limit])
    return [row["kind"] for row in rows]


async def counts(*, conn: BaseDBAsyncClient, channel: str) -> Counts:
    """Pending rows and dead letters of a channel."""
    rows = await conn.execute_query_dict(COUNTS_SQL, [channel])
    return Counts(int(rows[0]["pending"]), int(rows[0]["dead"]))
