"""Single-use account tokens: account_tokens (password reset, email verification, SHA-256
hashes only, expiry by the database's clock), and what using one writes to user_accounts."""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient

INSERT_TOKEN_SQL = (
    'INSERT INTO "account_tokens" ("token_hash", "user_id", "purpose", "expires_at") '
    'VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))')

VOID_TOKENS_SQL = (
    'UPDATE "account_tokens" SET "used_at" = clock_timestamp() '
    'WHERE "user_id" = $1 AND "purpose" = ANY($2::varchar[]) AND "used_at" IS NULL')

FIND_LIVE_SQL = (
    'SELECT "user_id" FROM "account_tokens" WHERE "token_hash" = $1 AND "purpose" = $2 '
    'AND "used_at" IS NULL AND "expires_at" > clock_timestamp()')

# Compare-and-set: of concurrent consumers of one token, the first to commit wins; the
# others wait on its row lock, re-check `used_at` and match nothing.
CONSUME_SQL = (
    'UPDATE "account_tokens" SET "used_at" = clock_timestamp() WHERE "token_hash" = $1 AND "purpose" = $2 '
    'AND "used_at" IS NULL AND "expires_at" > clock_timestamp() RETURNING "user_id"')

# The request for a password reset, as one statement whose work does not depend on whether
# the address belongs to an account: the lookup, the voiding of older tokens, the new token
# and the mail all run (on zero rows for an unknown or disabled address), so the database
# does the same work either way and answers in the same time.
REQUEST_RESET_SQL = '''
    WITH target AS (
        SELECT "id", "email" FROM "user_accounts"
        WHERE LOWER("email") = $1 AND "deleted_at" IS NULL AND "status" = 'active'
        FOR NO KEY UPDATE),
    voided AS (
        UPDATE "account_tokens" t SET "used_at" = clock_timestamp() FROM target
        WHERE t."user_id" = target."id" AND t."purpose" = 'password_reset' AND t."used_at" IS NULL
        RETURNING t."id"),
    issued AS (
        INSERT INTO "account_tokens" ("token_hash", "user_id", "purpose", "expires_at")
        SELECT $2, target."id", 'password_reset', clock_timestamp() + make_interval(secs => $3) FROM target
        RETURNING "user_id"),
    mailed AS (
        INSERT INTO "mail_outbox" ("recipient", "subject", "body", "kind", "user_id")
        SELECT target."email", $4, $5, 'password_reset', target."id" FROM target
        RETURNING "id")
    SELECT (SELECT "user_id" FROM issued) AS "user_id", (SELECT count(*) FROM voided) AS "voided",
           (SELECT "id" FROM mailed) AS "mail_id"'''

SET_RESET_PASSWORD_SQL = (
    'UPDATE "user_accounts" SET "password_hash" = $2, "locked_until" = NULL, '
    '"email_verified_at" = COALESCE("email_verified_at", clock_timestamp()), "updated_at" = now() '
    'WHERE "id" = $1 RETURNING "email"')

MARK_VERIFIED_SQL = (
    'UPDATE "user_accounts" SET "email_verified_at" = COALESCE("email_verified_at", clock_timestamp()), '
    '"updated_at" = now() WHERE "id" = $1 AND "deleted_at" IS NULL AND "status" = \'active\' RETURNING "id"')

IS_VERIFIED_SQL = 'SELECT "email_verified_at" IS NOT NULL AS "verified" FROM "user_accounts" WHERE "id" = $1'


async def insert_token(*, conn: BaseDBAsyncClient, token_hash: str, user_id: str, purpose: str, ttl_s: int) -> None:
    """Store a new token's hash, valid `ttl_s` from now by the database's clock."""
    await conn.execute_query(INSERT_TOKEN_SQL, [token_hash, user_id, purpose, ttl_s])


async def void_tokens(*, conn: BaseDBAsyncClient, user_id: str, purposes: list[str]) -> int:
    """Mark a user's live tokens of these purposes used; how many."""
    voided, _ = await conn.execute_query(VOID_TOKENS_SQL, [user_id, purposes])
    return int(voided)


async def find_live(*, conn: BaseDBAsyncClient, token_hash: str, purpose: str) -> str | None:
    """The user of a live (unused, unexpired) token, or None; reads only."""
    rows = await conn.execute_query_dict(FIND_LIVE_SQL, [token_hash, purpose])
    return str(rows[0]["user_id"]) if rows else None


async def consume(*, conn: BaseDBAsyncClient, token_hash: str, purpose: str) -> str | None:
    """Use up a live token in the caller's transaction; its user, or None if it was not live."""
    rows = await conn.execute_query_dict(CONSUME_SQL, [token_hash, purpose])
    return str(rows[0]["user_id"]) if rows else None


async def request_reset(*, conn: BaseDBAsyncClient, email: str, token_hash: str, ttl_s: int, subject: str,
                        body: str) -> str | None:
    """REQUEST_RESET_SQL: the account's id when it got a token and a mail, else None."""
    rows = await conn.execute_query_dict(REQUEST_RESET_SQL, [email, token_hash, ttl_s, subject, body])
    user_id = rows[0]["user_id"]
    return str(user_id) if user_id is not None else None


async def set_reset_password(*, conn: BaseDBAsyncClient, user_id: str, password_hash: str) -> str:
    """The new hash, no PostgreSQL lock, the address verified (the reset link proved it); the email."""
    rows = await conn.execute_query_dict(SET_RESET_PASSWORD_SQL, [user_id, password_hash])
    email: str = rows[0]["email"]
    return email


async def mark_verified(*, conn: BaseDBAsyncClient, user_id: str) -> bool:
    """Set email_verified_at (kept if already set) on a live, active account; False otherwise."""
    return bool(await conn.execute_query_dict(MARK_VERIFIED_SQL, [user_id]))


async def is_verified(*, conn: BaseDBAsyncClient, user_id: str) -> bool:
    rows = await conn.execute_query_dict(IS_VERIFIED_SQL, [user_id])
    return bool(rows and rows[0]["verified"])
