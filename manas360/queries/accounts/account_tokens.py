"""Single-use account tokens: account_tokens (password reset, email verification, SHA-256
hashes only, expiry by the database's clock), and what using one writes to user_accounts.

A token is live while unused, unexpired and created after its account's credential epoch
(user_accounts.credential_epoch: every security event moves it, killing every token made
before it, whoever holds one)."""

from __future__ import annotations

from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.queries.mail import outbox as outbox_queries

INSERT_TOKEN_SQL = (
    'INSERT INTO "account_tokens" ("token_hash", "user_id", "purpose", "expires_at") '
    'VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4)) RETURNING "id"'
)

_LIVE = """t."used_at" IS NULL AND t."expires_at" > clock_timestamp() AND NOT EXISTS (
        SELECT 1 FROM "user_accounts" u WHERE u."id" = t."user_id"
        AND u."credential_epoch" IS NOT NULL AND t."created_at" <= u."credential_epoch")"""

FIND_LIVE_SQL = f'SELECT t."user_id" FROM "account_tokens" t WHERE t."token_hash" = $1 AND t."purpose" = $2 AND {_LIVE}'

# Compare-and-set: of concurrent consumers of one token, the first to commit wins; the
# others wait on its row lock, re-check `used_at` and match nothing.
CONSUME_SQL = (
    'UPDATE "account_tokens" t SET "used_at" = clock_timestamp() WHERE t."token_hash" = $1 AND t."purpose" = $2 '
    f'AND {_LIVE} RETURNING t."user_id", t."id"'
)

# The request for a link (a password reset; a verification resend by address), as one
# statement whose work does not depend on whether the address belongs to an account that
# gets one: the lookup, the hourly allowance ($6 mails of this kind per account per hour),
# dropping the oldest live tokens beyond $7 (a newer request never voids the others: nobody
# can keep killing the owner's link by asking for new ones), the new token and the mail all
# run (on zero rows for an unknown, disabled or over-allowance address, and for a verified
# one when $8 is false), so the database does the same work either way, in the same time.
REQUEST_LINK_SQL = """
    WITH target AS (
        SELECT a."id", a."email" FROM "user_accounts" a
        WHERE LOWER(a."email") = $1 AND a."deleted_at" IS NULL AND a."status" = 'active'
          AND ($8 OR a."email_verified_at" IS NULL)
          AND (SELECT count(*) FROM "outbox" m WHERE m."user_id" = a."id" AND m."kind" = $4
               AND m."created_at" > clock_timestamp() - interval '1 hour') < $6
        FOR NO KEY UPDATE OF a),
    dropped AS (
        UPDATE "account_tokens" t SET "used_at" = clock_timestamp() FROM target
        WHERE t."id" IN (
            SELECT o."id" FROM "account_tokens" o WHERE o."user_id" = target."id" AND o."purpose" = $4
            AND o."used_at" IS NULL AND o."expires_at" > clock_timestamp() ORDER BY o."created_at" DESC OFFSET $7)
        RETURNING t."id"),
    unsent AS (
        UPDATE "outbox" m SET "discarded_at" = clock_timestamp(), "body" = NULL, "payload_sealed" = NULL
        WHERE m."token_id" IN (SELECT "id" FROM dropped) AND m."sent_at" IS NULL AND m."discarded_at" IS NULL
        RETURNING m."id"),
    issued AS (
        INSERT INTO "account_tokens" ("token_hash", "user_id", "purpose", "expires_at")
        SELECT $2, target."id", $4, clock_timestamp() + make_interval(secs => $3) FROM target
        RETURNING "id", "user_id"),
    mailed AS (
        INSERT INTO "outbox" ("channel", "recipient", "subject", "payload_sealed", "kind", "user_id", "token_id",
                              "carries_token")
        SELECT 'mail', target."email", $5, $9, $4, target."id", issued."id", TRUE FROM target, issued
        RETURNING "id")
    SELECT (SELECT "user_id" FROM issued) AS "user_id", (SELECT count(*) FROM dropped) AS "dropped",
           (SELECT "id" FROM mailed) AS "mail_id", (SELECT count(*) FROM unsent) AS "unsent\""""

MAILS_THIS_HOUR_SQL = """
    SELECT count(*) AS "mails" FROM "outbox"
    WHERE "user_id" = $1 AND "kind" = $2 AND "created_at" > clock_timestamp() - interval '1 hour'"""

LIVE_TOKENS_SQL = f"""
    SELECT t."id" FROM "account_tokens" t WHERE t."user_id" = $1 AND t."purpose" = $2 AND {_LIVE}
    ORDER BY t."created_at" DESC OFFSET $3"""
DROP_TOKENS_SQL = (
    f'UPDATE "account_tokens" SET "used_at" = clock_timestamp() WHERE "id" IN ({LIVE_TOKENS_SQL}) RETURNING "id"'
)

MARK_VERIFIED_SQL = (
    'UPDATE "user_accounts" SET "email_verified_at" = COALESCE("email_verified_at", clock_timestamp()), '
    '"updated_at" = now() WHERE "id" = $1 AND "deleted_at" IS NULL AND "status" = \'active\' RETURNING "id"'
)

IS_VERIFIED_SQL = 'SELECT "email_verified_at" IS NOT NULL AS "verified" FROM "user_accounts" WHERE "id" = $1'


async def insert_token(*, conn: BaseDBAsyncClient, token_hash: str, user_id: str, purpose: str, ttl_s: int) -> int:
    """Store a new token's hash, valid `ttl_s` from now by the database's clock; its id."""
    rows = await conn.execute_query_dict(INSERT_TOKEN_SQL, [token_hash, user_id, purpose, ttl_s])
    token_id: int = rows[0]["id"]
    return token_id


async def drop_beyond(*, conn: BaseDBAsyncClient, user_id: str, purpose: str, keep: int) -> list[int]:
    """Mark used every live token of the purpose but the `keep` newest; their ids."""
    rows = await conn.execute_query_dict(DROP_TOKENS_SQL, [user_id, purpose, keep])
    return [row["id"] for row in rows]


async def find_live(*, conn: BaseDBAsyncClient, token_hash: str, purpose: str) -> str | None:
    """The user of a live (unused, unexpired, not voided) token, or None; reads only."""
    rows = await conn.execute_query_dict(FIND_LIVE_SQL, [token_hash, purpose])
    return str(rows[0]["user_id"]) if rows else None


async def consume(*, conn: BaseDBAsyncClient, token_hash: str, purpose: str) -> str | None:
    """Use up a live token in the caller's transaction (its mail, if still waiting, is
    discarded); its user, or None if it was not live."""
    rows = await conn.execute_query_dict(CONSUME_SQL, [token_hash, purpose])
    if not rows:
        return None
    await outbox_queries.discard_for_tokens(conn=conn, token_ids=[rows[0]["id"]])
    return str(rows[0]["user_id"])


class LinkRequest(NamedTuple):
    """What REQUEST_LINK_SQL did: the account that got a token and a mail (None: nobody did)."""

    user_id: str | None
    dropped: int
    mail_id: int | None


async def request_link(
    *,
    conn: BaseDBAsyncClient,
    email: str,
    purpose: str,
    token_hash: str,
    ttl_s: int,
    subject: str,
    sealed_body: bytes,
    hourly: int,
    live: int,
    verified_too: bool,
) -> LinkRequest:
    """REQUEST_LINK_SQL for the address: at most `hourly` such mails per account per hour and
    `live` live tokens; `verified_too` False skips verified addresses (a verification resend).
    The senders are woken whether or not a mail was queued: the same work either way."""
    rows = await conn.execute_query_dict(
        REQUEST_LINK_SQL, [email, token_hash, ttl_s, purpose, subject, hourly, live - 1, verified_too, sealed_body]
    )
    await outbox_queries.notify(conn=conn)
    row = rows[0]
    user_id = row["user_id"]
    return LinkRequest(str(user_id) if user_id is not None else None, int(row["dropped"]), row["mail_id"])


async def mails_this_hour(*, conn: BaseDBAsyncClient, user_id: str, kind: str) -> int:
    """Mails of this kind queued for the account within the last hour."""
    rows = await conn.execute_query_dict(MAILS_THIS_HOUR_SQL, [user_id, kind])
    return int(rows[0]["mails"])


async def mark_verified(*, conn: BaseDBAsyncClient, user_id: str) -> bool:
    """Set email_verified_at (kept if already set) on a live, active account; False otherwise."""
    return bool(await conn.execute_query_dict(MARK_VERIFIED_SQL, [user_id]))


async def is_verified(*, conn: BaseDBAsyncClient, user_id: str) -> bool:
    rows = await conn.execute_query_dict(IS_VERIFIED_SQL, [user_id])
    return bool(rows and rows[0]["verified"])
