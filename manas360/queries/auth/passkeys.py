"""Every statement of passkeys: the credentials and the ceremonies' challenges.

A challenge is taken (`take_challenge`) by one compare-and-set UPDATE: of two concurrent
uses exactly one gets it. Whether it is still alive for its account (created after the
credential epoch) is read in the same statement when it is bound to a user, and checked
again by the flow under the user's row lock (`challenge_outlived`) for a discoverable login.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient


class Passkey(NamedTuple):
    """A passkey as its owner sees it."""

    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    backed_up: bool


class StoredCredential(NamedTuple):
    """What an assertion is verified against."""

    id: str
    user_id: str
    credential_id: bytes
    public_key: bytes
    sign_count: int


class Challenge(NamedTuple):
    id: int
    purpose: str
    user_id: str | None
    challenge: bytes
    name: str | None
    for_email: bool
    """Asked for an email's passkeys: only the passkey of `user_id` (none when unknown) may answer."""
    created_at: datetime


_PASSKEY_COLUMNS = '"id", "name", "created_at", "last_used_at", "backed_up"'


def _passkey(row: dict[str, object]) -> Passkey:
    return Passkey(
        str(row["id"]),
        str(row["name"]),
        row["created_at"],  # type: ignore[arg-type]
        row["last_used_at"],  # type: ignore[arg-type]
        bool(row["backed_up"]),
    )


LIST_SQL = f'SELECT {_PASSKEY_COLUMNS} FROM "webauthn_credentials" WHERE "user_id" = $1 ORDER BY "created_at", "id"'


async def list_passkeys(*, conn: BaseDBAsyncClient, user_id: str) -> list[Passkey]:
    return [_passkey(row) for row in await conn.execute_query_dict(LIST_SQL, [user_id])]


CREDENTIAL_IDS_SQL = 'SELECT "credential_id", "transports" FROM "webauthn_credentials" WHERE "user_id" = $1'


async def credential_ids(*, conn: BaseDBAsyncClient, user_id: str) -> list[tuple[bytes, list[str]]]:
    """(credential id, transports) of each of the user's passkeys: the exclude and allow lists."""
    rows = await conn.execute_query_dict(CREDENTIAL_IDS_SQL, [user_id])
    return [(bytes(row["credential_id"]), list(row["transports"])) for row in rows]


BY_EMAIL_SQL = """
    SELECT u."id", c."credential_id", c."transports"
    FROM "user_accounts" u LEFT JOIN "webauthn_credentials" c ON c."user_id" = u."id"
    WHERE u."email" = $1 AND u."deleted_at" IS NULL"""


async def credential_ids_by_email(
    *, conn: BaseDBAsyncClient, email: str
) -> tuple[str | None, list[tuple[bytes, list[str]]]]:
    """(user id or None, its passkeys' (credential id, transports)): one statement whether the
    address is known or not, so both take the same path."""
    rows = await conn.execute_query_dict(BY_EMAIL_SQL, [email])
    if not rows:
        return None, []
    found = [(bytes(row["credential_id"]), list(row["transports"])) for row in rows if row["credential_id"] is not None]
    return str(rows[0]["id"]), found


COUNT_SQL = 'SELECT count(*) AS "n" FROM "webauthn_credentials" WHERE "user_id" = $1'


async def count(*, conn: BaseDBAsyncClient, user_id: str) -> int:
    rows = await conn.execute_query_dict(COUNT_SQL, [user_id])
    return int(rows[0]["n"])


INSERT_SQL = f"""
    INSERT INTO "webauthn_credentials" ("id", "user_id", "credential_id", "public_key", "sign_count", "transports",
        "aaguid", "backup_eligible", "backed_up", "user_verified_at_registration", "name")
    VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT ("credential_id") DO NOTHING
    RETURNING {_PASSKEY_COLUMNS}"""


async def insert(
    *,
    conn: BaseDBAsyncClient,
    user_id: str,
    credential_id: bytes,
    public_key: bytes,
    sign_count: int,
    transports: list[str],
    aaguid: str | None,
    backup_eligible: bool,
    backed_up: bool,
    user_verified: bool,
    name: str,
) -> Passkey | None:
    """Store a new passkey; None when its credential id is already registered (to anyone)."""
    rows = await conn.execute_query_dict(
        INSERT_SQL,
        [
            user_id,
            credential_id,
            public_key,
            sign_count,
            transports,
            aaguid,
            backup_eligible,
            backed_up,
            user_verified,
            name,
        ],
    )
    return _passkey(rows[0]) if rows else None


RENAME_SQL = (
    f'UPDATE "webauthn_credentials" SET "name" = $3 WHERE "id" = $1 AND "user_id" = $2 RETURNING {_PASSKEY_COLUMNS}'
)


async def rename(*, conn: BaseDBAsyncClient, user_id: str, passkey_id: str, name: str) -> Passkey | None:
    rows = await conn.execute_query_dict(RENAME_SQL, [passkey_id, user_id, name])
    return _passkey(rows[0]) if rows else None


DELETE_SQL = 'DELETE FROM "webauthn_credentials" WHERE "id" = $1 AND "user_id" = $2 RETURNING "name"'


async def delete(*, conn: BaseDBAsyncClient, user_id: str, passkey_id: str) -> str | None:
    """Remove one of the user's passkeys; its name, or None when the user holds no such passkey."""
    rows = await conn.execute_query_dict(DELETE_SQL, [passkey_id, user_id])
    return str(rows[0]["name"]) if rows else None


DELETE_ALL_SQL = 'DELETE FROM "webauthn_credentials" WHERE "user_id" = $1'


async def delete_all(*, conn: BaseDBAsyncClient, user_id: str) -> int:
    """Remove every passkey of the user (the first proof of the mailbox); how many."""
    deleted, _ = await conn.execute_query(DELETE_ALL_SQL, [user_id])
    return int(deleted)


FIND_SQL = """
    SELECT c."id", c."user_id", c."credential_id", c."public_key", c."sign_count"
    FROM "webauthn_credentials" c JOIN "user_accounts" u ON u."id" = c."user_id"
    WHERE c."credential_id" = $1 AND u."deleted_at" IS NULL"""


async def find_credential(*, conn: BaseDBAsyncClient, credential_id: bytes) -> StoredCredential | None:
    rows = await conn.execute_query_dict(FIND_SQL, [credential_id])
    if not rows:
        return None
    row = rows[0]
    return StoredCredential(
        str(row["id"]), str(row["user_id"]), bytes(row["credential_id"]), bytes(row["public_key"]), row["sign_count"]
    )


LOCK_CREDENTIAL_SQL = """
    SELECT "sign_count" FROM "webauthn_credentials" WHERE "id" = $1 AND "user_id" = $2 FOR UPDATE"""


async def lock_sign_count(*, conn: BaseDBAsyncClient, passkey_id: str, user_id: str) -> int | None:
    """Lock the passkey (after its user, the lock order) and read its counter; None when it is gone."""
    rows = await conn.execute_query_dict(LOCK_CREDENTIAL_SQL, [passkey_id, user_id])
    return int(rows[0]["sign_count"]) if rows else None


USED_SQL = """
    UPDATE "webauthn_credentials" SET "sign_count" = $2, "backed_up" = $3, "last_used_at" = clock_timestamp()
    WHERE "id" = $1"""


async def mark_used(*, conn: BaseDBAsyncClient, passkey_id: str, sign_count: int, backed_up: bool) -> None:
    await conn.execute_query(USED_SQL, [passkey_id, sign_count, backed_up])


PRUNE_CHALLENGES_SQL = """
    DELETE FROM "webauthn_challenges" WHERE "id" IN (
        SELECT "id" FROM "webauthn_challenges" WHERE "expires_at" < clock_timestamp() ORDER BY "expires_at" LIMIT 16)"""
INSERT_CHALLENGE_SQL = """
    INSERT INTO "webauthn_challenges" ("handle_hash", "purpose", "user_id", "challenge", "name", "for_email",
        "expires_at")
    VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp() + make_interval(secs => $7))"""


async def insert_challenge(
    *,
    conn: BaseDBAsyncClient,
    handle_hash: bytes,
    purpose: str,
    user_id: str | None,
    challenge: bytes,
    name: str | None,
    ttl_s: int,
    for_email: bool = False,
) -> None:
    """Store a new challenge, expiring by the database's clock; a few expired ones go on the
    way (a bounded delete: each insert removes more than it adds once the table has any)."""
    await conn.execute_query(PRUNE_CHALLENGES_SQL, [])
    await conn.execute_query(INSERT_CHALLENGE_SQL, [handle_hash, purpose, user_id, challenge, name, for_email, ttl_s])


# Taken once: unused, unexpired, of the purpose asked, and (when bound to a user) created after
# that user's credential epoch.
TAKE_CHALLENGE_SQL = """
    UPDATE "webauthn_challenges" c SET "used_at" = clock_timestamp()
    WHERE c."handle_hash" = $1 AND c."used_at" IS NULL AND c."expires_at" > clock_timestamp() AND c."purpose" = $2
      AND NOT EXISTS (
        SELECT 1 FROM "user_accounts" u WHERE u."id" = c."user_id"
          AND (u."deleted_at" IS NOT NULL
               OR (u."credential_epoch" IS NOT NULL AND c."created_at" <= u."credential_epoch")))
    RETURNING c."id", c."purpose", c."user_id", c."challenge", c."name", c."for_email", c."created_at\""""


async def take_challenge(*, conn: BaseDBAsyncClient, handle_hash: bytes, purpose: str) -> Challenge | None:
    """Spend a live challenge of `purpose`; None when it is unknown, used, expired, of another
    purpose, or voided by a security event of its user."""
    rows = await conn.execute_query_dict(TAKE_CHALLENGE_SQL, [handle_hash, purpose])
    if not rows:
        return None
    row = rows[0]
    return Challenge(
        row["id"],
        row["purpose"],
        str(row["user_id"]) if row["user_id"] is not None else None,
        bytes(row["challenge"]),
        row["name"],
        row["for_email"],
        row["created_at"],
    )


OUTLIVED_SQL = """
    SELECT 1 FROM "user_accounts" WHERE "id" = $1 AND "credential_epoch" IS NOT NULL AND "credential_epoch" >= $2"""


async def challenge_outlived(*, conn: BaseDBAsyncClient, user_id: str, created_at: datetime) -> bool:
    """Whether a security event of the user came after a challenge was made (it is dead for them)."""
    return bool(await conn.execute_query_dict(OUTLIVED_SQL, [user_id, created_at]))
