"""Every statement of multi-factor sign-in: the sealed TOTP secret, recovery codes, mfa_tokens.

Writes that decide whether a code or a token counts (`accept_step`, `use_recovery_code`,
`use_token`) are compare-and-set statements run under the user's row lock: of two
concurrent uses of one code or one token, exactly one changes a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient


@dataclass(frozen=True, slots=True)
class Account:
    email: str
    mfa_enabled: bool


@dataclass(frozen=True, slots=True)
class Secret:
    sealed: bytes
    confirmed: bool
    last_step: int | None


LOCK_ACCOUNT_SQL = (
    'SELECT "email", "mfa_enabled" FROM "user_accounts" WHERE "id" = $1 AND "deleted_at" IS NULL FOR NO KEY UPDATE'
)


async def lock_account(*, conn: BaseDBAsyncClient, user_id: str) -> Account | None:
    """Lock the user row (first in the lock order) and read what MFA needs of it."""
    rows = await conn.execute_query_dict(LOCK_ACCOUNT_SQL, [user_id])
    return Account(email=rows[0]["email"], mfa_enabled=rows[0]["mfa_enabled"]) if rows else None


IS_ENABLED_SQL = 'SELECT "mfa_enabled" FROM "user_accounts" WHERE "id" = $1'


async def is_enabled(*, conn: BaseDBAsyncClient, user_id: str) -> bool:
    rows = await conn.execute_query_dict(IS_ENABLED_SQL, [user_id])
    return bool(rows and rows[0]["mfa_enabled"])


STORE_PENDING_SQL = """
    INSERT INTO "mfa_totp" ("user_id", "secret_sealed") VALUES ($1, $2)
    ON CONFLICT ("user_id") DO UPDATE SET "secret_sealed" = EXCLUDED."secret_sealed", "confirmed_at" = NULL,
        "last_step" = NULL, "created_at" = clock_timestamp()"""


async def store_pending(*, conn: BaseDBAsyncClient, user_id: str, sealed: bytes) -> None:
    """Keep a new, unconfirmed secret (replacing any earlier one)."""
    await conn.execute_query(STORE_PENDING_SQL, [user_id, sealed])


GET_SECRET_SQL = (
    'SELECT "secret_sealed", "confirmed_at" IS NOT NULL AS "confirmed", "last_step" FROM "mfa_totp" '
    'WHERE "user_id" = $1'
)


async def get_secret(*, conn: BaseDBAsyncClient, user_id: str) -> Secret | None:
    rows = await conn.execute_query_dict(GET_SECRET_SQL, [user_id])
    if not rows:
        return None
    row = rows[0]
    return Secret(sealed=bytes(row["secret_sealed"]), confirmed=row["confirmed"], last_step=row["last_step"])


CONFIRM_SQL = """
    WITH confirmed AS (
        UPDATE "mfa_totp" SET "confirmed_at" = clock_timestamp(), "last_step" = $2
        WHERE "user_id" = $1 AND "confirmed_at" IS NULL RETURNING "user_id")
    UPDATE "user_accounts" SET "mfa_enabled" = TRUE, "updated_at" = now()
    WHERE "id" IN (SELECT "user_id" FROM confirmed)"""


async def confirm(*, conn: BaseDBAsyncClient, user_id: str, step: int) -> bool:
    """Confirm the pending secret (the confirming code's step counts as used) and turn MFA on."""
    updated, _ = await conn.execute_query(CONFIRM_SQL, [user_id, step])
    return bool(updated)


ACCEPT_STEP_SQL = """
    UPDATE "mfa_totp" SET "last_step" = $2
    WHERE "user_id" = $1 AND "confirmed_at" IS NOT NULL AND ("last_step" IS NULL OR "last_step" < $2)"""


async def accept_step(*, conn: BaseDBAsyncClient, user_id: str, step: int) -> bool:
    """Record a TOTP time step as used; False when it (or a later one) already was: a replay."""
    updated, _ = await conn.execute_query(ACCEPT_STEP_SQL, [user_id, step])
    return bool(updated)


RESEAL_SQL = 'UPDATE "mfa_totp" SET "secret_sealed" = $2 WHERE "user_id" = $1'


async def reseal(*, conn: BaseDBAsyncClient, user_id: str, sealed: bytes) -> None:
    await conn.execute_query(RESEAL_SQL, [user_id, sealed])


DELETE_RECOVERY_CODES_SQL = 'DELETE FROM "mfa_recovery_codes" WHERE "user_id" = $1'
INSERT_RECOVERY_CODES_SQL = (
    'INSERT INTO "mfa_recovery_codes" ("user_id", "code_hash") SELECT $1, h FROM unnest($2::bytea[]) AS h'
)


async def replace_recovery_codes(*, conn: BaseDBAsyncClient, user_id: str, hashes: list[bytes]) -> None:
    await conn.execute_query(DELETE_RECOVERY_CODES_SQL, [user_id])
    await conn.execute_query(INSERT_RECOVERY_CODES_SQL, [user_id, hashes])


HAS_RECOVERY_CODE_SQL = """
    SELECT 1 FROM "mfa_recovery_codes" c JOIN "user_accounts" u ON u."id" = c."user_id"
    WHERE c."user_id" = $1 AND c."code_hash" = $2 AND c."used_at" IS NULL AND u."mfa_enabled\""""


async def has_recovery_code(*, conn: BaseDBAsyncClient, user_id: str, code_hash: bytes) -> bool:
    """An unused recovery code of a user whose MFA is on (read only)."""
    return bool(await conn.execute_query_dict(HAS_RECOVERY_CODE_SQL, [user_id, code_hash]))


USE_RECOVERY_CODE_SQL = """
    UPDATE "mfa_recovery_codes" SET "used_at" = clock_timestamp()
    WHERE "user_id" = $1 AND "code_hash" = $2 AND "used_at" IS NULL"""


async def use_recovery_code(*, conn: BaseDBAsyncClient, user_id: str, code_hash: bytes) -> bool:
    """Spend a recovery code; False when it is unknown or already spent."""
    updated, _ = await conn.execute_query(USE_RECOVERY_CODE_SQL, [user_id, code_hash])
    return bool(updated)


TURN_OFF_SQL = """
    WITH secret AS (DELETE FROM "mfa_totp" WHERE "user_id" = $1),
         codes AS (DELETE FROM "mfa_recovery_codes" WHERE "user_id" = $1),
         tokens AS (UPDATE "mfa_tokens" SET "used_at" = clock_timestamp() WHERE "user_id" = $1 AND "used_at" IS NULL)
    UPDATE "user_accounts" u SET "mfa_enabled" = FALSE, "updated_at" = now()
    FROM "user_accounts" before WHERE u."id" = $1 AND before."id" = u."id"
    RETURNING before."mfa_enabled" AS "was_enabled\""""


async def turn_off(*, conn: BaseDBAsyncClient, user_id: str) -> bool:
    """MFA off: the secret (pending or confirmed), the recovery codes and the outstanding
    mfa_tokens go; True when it was on."""
    rows = await conn.execute_query_dict(TURN_OFF_SQL, [user_id])
    return bool(rows and rows[0]["was_enabled"])


PRUNE_TOKENS_SQL = """
    DELETE FROM "mfa_tokens" WHERE "user_id" = $1 AND ("used_at" IS NOT NULL OR "expires_at" <= clock_timestamp())"""
# One reading of the clock for both times: its lifetime is exactly the TTL (two readings, the
# column default's and this one's, made it a microsecond longer now and then).
INSERT_TOKEN_SQL = """
    INSERT INTO "mfa_tokens" ("token_hash", "user_id", "created_at", "expires_at", "amr")
    SELECT $1, $2, clock.now, clock.now + make_interval(secs => $3), $4 FROM (SELECT clock_timestamp() AS now) clock"""


async def insert_token(*, conn: BaseDBAsyncClient, user_id: str, token_hash: bytes, ttl_s: int, amr: list[str]) -> None:
    """Store a new mfa_token's hash (and the first factor it stands for), expiring by the
    database's clock; the user's spent and expired ones are deleted on the way, so the table
    holds about one row per MFA user."""
    await conn.execute_query(PRUNE_TOKENS_SQL, [user_id])
    await conn.execute_query(INSERT_TOKEN_SQL, [token_hash, user_id, ttl_s, amr])


# Live: unused, unexpired, under its wrong-code allowance ($2), and created after the user's
# credential epoch (every security event since voids it).
_LIVE_TOKEN_SQL = """
    "mfa_tokens" t JOIN "user_accounts" u ON u."id" = t."user_id"
    WHERE t."token_hash" = $1 AND t."used_at" IS NULL AND t."expires_at" > clock_timestamp()
      AND t."failures" <= $2 AND u."deleted_at" IS NULL
      AND (u."credential_epoch" IS NULL OR t."created_at" > u."credential_epoch")"""
# One attempt at a token, counted before its code is looked at (so concurrency never buys a
# fourth code): the token's user and first factor, or nothing once it is not live.
TAKE_ATTEMPT_SQL = f"""
    UPDATE "mfa_tokens" SET "failures" = "failures" + 1
    WHERE "id" = (SELECT t."id" FROM {_LIVE_TOKEN_SQL} AND t."failures" < $2 FOR UPDATE OF t)
    RETURNING "user_id", "amr\""""
USE_TOKEN_SQL = f"""
    UPDATE "mfa_tokens" SET "used_at" = clock_timestamp()
    WHERE "id" = (SELECT t."id" FROM {_LIVE_TOKEN_SQL} AND t."user_id" = $3)"""


class TokenAttempt(NamedTuple):
    user_id: str
    amr: tuple[str, ...]
    """The first factor the login presented before its token was issued."""


async def take_attempt(*, conn: BaseDBAsyncClient, token_hash: bytes, attempts: int) -> TokenAttempt | None:
    """Count one attempt at a live mfa_token (at most `attempts` per token); None when it is not live."""
    rows = await conn.execute_query_dict(TAKE_ATTEMPT_SQL, [token_hash, attempts])
    return TokenAttempt(str(rows[0]["user_id"]), tuple(rows[0]["amr"])) if rows else None


async def use_token(*, conn: BaseDBAsyncClient, token_hash: bytes, user_id: str, attempts: int) -> bool:
    """Spend a live mfa_token of `user_id`; False when it is not (any more) live."""
    updated, _ = await conn.execute_query(USE_TOKEN_SQL, [token_hash, attempts, user_id])
    return bool(updated)


# Wrong codes per account, no window: taken before a code is checked (like the lockout's
# reservations), so concurrency never buys a check beyond the ceiling ($2).
TAKE_CODE_ATTEMPT_SQL = (
    'UPDATE "user_accounts" SET "mfa_failures" = "mfa_failures" + 1 '
    'WHERE "id" = $1 AND "mfa_failures" < $2 RETURNING "mfa_failures"'
)
CLEAR_CODE_FAILURES_SQL = 'UPDATE "user_accounts" SET "mfa_failures" = 0 WHERE "id" = $1 AND "mfa_failures" <> 0'


async def take_code_attempt(*, conn: BaseDBAsyncClient, user_id: str, ceiling: int) -> int | None:
    """Count one code check of the account as failed until it succeeds; the count, or None at the ceiling."""
    rows = await conn.execute_query_dict(TAKE_CODE_ATTEMPT_SQL, [user_id, ceiling])
    return int(rows[0]["mfa_failures"]) if rows else None


async def clear_code_failures(*, conn: BaseDBAsyncClient, user_id: str) -> None:
    """A second factor was accepted: the wrong codes in a row start again from zero."""
    await conn.execute_query(CLEAR_CODE_FAILURES_SQL, [user_id])


VOID_TOKENS_SQL = 'UPDATE "mfa_tokens" SET "used_at" = clock_timestamp() WHERE "user_id" = $1 AND "used_at" IS NULL'


async def void_tokens(*, conn: BaseDBAsyncClient, user_id: str) -> int:
    """Spend every outstanding mfa_token of the user (disabling an account)."""
    updated, _ = await conn.execute_query(VOID_TOKENS_SQL, [user_id])
    return int(updated)
