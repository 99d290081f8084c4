"""The mail outbox: mail_outbox. Queue in the caller's transaction; claim, record a delivery
or a failure, each its own short statement (pruning is a maintenance job)."""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

INSERT_MAIL_SQL = (
    'INSERT INTO "mail_outbox" ("recipient", "subject", "body", "kind", "user_id") '
    'VALUES ($1, $2, $3, $4, $5) RETURNING "id"')

# One statement, so one short transaction: the due rows this sender takes are locked
# (SKIP LOCKED: concurrent senders take other rows, never wait) and leased by moving
# next_attempt_at past the lease; a sender that dies leaves them due again after it.
CLAIM_DUE_SQL = (
    'WITH due AS (SELECT "id" FROM "mail_outbox" WHERE "sent_at" IS NULL AND "next_attempt_at" <= clock_timestamp() '
    'ORDER BY "next_attempt_at" LIMIT $1 FOR UPDATE SKIP LOCKED) '
    'UPDATE "mail_outbox" m SET "attempts" = m."attempts" + 1, '
    '"next_attempt_at" = clock_timestamp() + make_interval(secs => $2) FROM due WHERE m."id" = due."id" '
    'RETURNING m."id", m."recipient", m."subject", m."body", m."kind", m."attempts"')

# The body carries a live token: once delivered it is not kept.
MARK_SENT_SQL = (
    'UPDATE "mail_outbox" SET "sent_at" = clock_timestamp(), "body" = NULL, "last_error" = NULL '
    'WHERE "id" = $1 AND "sent_at" IS NULL')

MARK_FAILED_SQL = (
    'UPDATE "mail_outbox" SET "last_error" = $2, "next_attempt_at" = clock_timestamp() + make_interval(secs => $3) '
    'WHERE "id" = $1 AND "sent_at" IS NULL')


async def insert_mail(*, conn: BaseDBAsyncClient, recipient: str, subject: str, body: str, kind: str,
                      user_id: str | None) -> int:
    """Queue one mail in the caller's transaction; its id."""
    rows = await conn.execute_query_dict(INSERT_MAIL_SQL, [recipient, subject, body, kind, user_id])
    mail_id: int = rows[0]["id"]
    return mail_id


async def claim_due(*, conn: BaseDBAsyncClient, limit: int, lease_s: float) -> list[dict[str, Any]]:
    """Lease up to `limit` due, undelivered mails for this sender (attempts counted now)."""
    return await conn.execute_query_dict(CLAIM_DUE_SQL, [limit, lease_s])


async def mark_sent(*, conn: BaseDBAsyncClient, mail_id: int) -> None:
    """Record the delivery (and drop the body)."""
    await conn.execute_query(MARK_SENT_SQL, [mail_id])


async def mark_failed(*, conn: BaseDBAsyncClient, mail_id: int, error: str, retry_in_s: float) -> None:
    """Record a failed attempt and when to try again."""
    await conn.execute_query(MARK_FAILED_SQL, [mail_id, error[:500], retry_in_s])
