"""User accounts: the email policy, the `<User>` view, creation and the caller's profile.

Email policy. An address is NFKC-normalised, trimmed and lower-cased, then must be plain
ASCII. NFKC folds compatibility forms onto their ASCII letters, so a full-width
`ａｌｉｃｅ@example.com` is the same account as `alice@example.com`; anything still
non-ASCII afterwards (Cyrillic or Greek look-alikes such as `аlice` with a Cyrillic `а`,
internationalised addresses) is refused at registration. So no two live accounts can look
alike, and every stored address is what the database's `LOWER(TRIM(email))` check expects.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from manas360 import reference
from manas360.clock import iso
from manas360.errors import EmailTaken, NotFound
from manas360.models import ACCOUNT_ACTIVE
from manas360.services.subscriptions import ACTIVE_PLAN_JOIN

MAX_EMAIL_CHARS = 254
MAX_DISPLAY_NAME_CHARS = 100
_EMAIL_UNIQUE_INDEX = "uq_user_accounts_email_live"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(rf"[a-z0-9!#$%&'*+/=?^_`{{|}}~.-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")

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


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    display_name: str
    role: str
    privilege_level: int
    plan: str
    created_at: datetime
    status: str = ACCOUNT_ACTIVE
    email_verified: bool = False
    mfa_enabled: bool = False
    tokens_valid_after: datetime | None = None
    """Access tokens issued at or before this instant are dead (not part of the view)."""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "display_name": self.display_name, "role": self.role,
                "privilege_level": self.privilege_level, "plan": self.plan, "created_at": iso(self.created_at),
                "status": self.status, "email_verified": self.email_verified, "mfa_enabled": self.mfa_enabled}


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a password check needs to know about an account."""

    user_id: str
    password_hash: str
    locked_until: datetime | None
    email: str = ""
    status: str = ACCOUNT_ACTIVE
    lock_ms: int = 0
    """Milliseconds left on `locked_until` by the database's clock (0 when not locked)."""
    tokens_valid_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    user: User
    permissions: list[str]
    features: list[str]
    subscription: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {**self.user.as_dict(), "permissions": self.permissions, "features": self.features,
                "subscription": self.subscription}


def normalize_email(raw: str) -> str:
    """NFKC, trim, lower-case: the form every address is stored and looked up in."""
    return unicodedata.normalize("NFKC", raw).strip().lower()


def email_problem(email: str) -> str | None:
    """Why a normalised address cannot be registered, or None when it can."""
    if not email.isascii():
        return "must contain only ASCII characters (look-alike letters are refused)"
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL.fullmatch(email):
        return "is not a valid email address"
    return None


def display_name_problem(name: str) -> str | None:
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        return f"must be at most {MAX_DISPLAY_NAME_CHARS} characters"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        return "must not contain control or formatting characters"
    return None


def _db(conn: BaseDBAsyncClient | None) -> BaseDBAsyncClient:
    return conn or connections.get("default")


def user_from_row(row: dict[str, Any]) -> User:
    return User(id=str(row["id"]), email=row["email"], display_name=row["display_name"], role=row["role"],
                privilege_level=row["privilege_level"], plan=row["plan"], created_at=row["created_at"],
                status=row["status"], email_verified=row["email_verified"], mfa_enabled=row["mfa_enabled"],
                tokens_valid_after=row["tokens_valid_after"])


async def get_user(*, user_id: str, conn: BaseDBAsyncClient | None = None) -> User | None:
    """The live user with role and effective plan, or None."""
    rows = await _db(conn).execute_query_dict(USER_SQL.format(where='u."id" = $1'), [user_id])
    return user_from_row(rows[0]) if rows else None


async def get_held_user(conn: BaseDBAsyncClient, *, user_id: str) -> User:
    """The user this transaction created or holds locked and confirmed live, so present:
    its absence is a broken invariant (RuntimeError), not an answer for the client."""
    user = await get_user(user_id=user_id, conn=conn)
    if user is None:
        raise RuntimeError(f"user {user_id} is not readable in the transaction that holds it")
    return user


_CREDENTIALS_SQL = (
    'SELECT "id", "email", "password_hash", "locked_until", "status", "tokens_valid_after", '
    'GREATEST(0, CEIL(EXTRACT(EPOCH FROM "locked_until" - clock_timestamp()) * 1000))::bigint AS "lock_ms" '
    'FROM "user_accounts" WHERE {where} AND "deleted_at" IS NULL')


async def get_credentials(*, email: str | None = None, user_id: str | None = None) -> Credentials | None:
    """The live account with a normalised address (or an id), or None."""
    where, value = ('LOWER("email") = $1', email) if user_id is None else ('"id" = $1', user_id)
    rows = await _db(None).execute_query_dict(_CREDENTIALS_SQL.format(where=where), [value])
    return _credentials(rows[0]) if rows else None


async def lock_credentials(conn: BaseDBAsyncClient, *, user_id: str) -> Credentials | None:
    """Lock the user row (first in the lock order) and read its credentials as they are now."""
    rows = await conn.execute_query_dict(
        _CREDENTIALS_SQL.format(where='"id" = $1') + ' FOR NO KEY UPDATE', [user_id])
    return _credentials(rows[0]) if rows else None


def _credentials(row: dict[str, Any]) -> Credentials:
    return Credentials(user_id=str(row["id"]), password_hash=row["password_hash"], locked_until=row["locked_until"],
                       email=row["email"], status=row["status"], lock_ms=int(row["lock_ms"] or 0),
                       tokens_valid_after=row["tokens_valid_after"])


async def replace_password_hash(conn: BaseDBAsyncClient, *, user_id: str, verified_hash: str,
                                new_hash: str) -> bool:
    """Set a new hash only if the stored one is still the one a check verified (compare-and-set)."""
    updated, _ = await conn.execute_query(
        'UPDATE "user_accounts" SET "password_hash" = $3, "updated_at" = now() '
        'WHERE "id" = $1 AND "password_hash" = $2', [user_id, verified_hash, new_hash])
    return bool(updated)


async def insert_user(conn: BaseDBAsyncClient, *, email: str, password_hash: str, display_name: str) -> str:
    """Insert an account with the default role; EmailTaken when the address is in use."""
    user_id = str(uuid.uuid4())
    try:
        await conn.execute_query(
            'INSERT INTO "user_accounts" ("id", "email", "password_hash", "display_name", "role_id") '
            'SELECT $1, $2, $3, $4, "id" FROM "roles" WHERE "name" = $5',
            [user_id, email, password_hash, display_name, reference.DEFAULT_ROLE])
    except IntegrityError as exc:
        # Two registrations racing for one address: the partial unique index decides.
        if getattr(exc.__cause__, "constraint_name", None) == _EMAIL_UNIQUE_INDEX:
            raise EmailTaken() from None
        raise
    return user_id


async def get_profile(*, user_id: str) -> Profile:
    """The caller as GET /me shows them: user, permissions, features and subscription."""
    conn = _db(None)
    rows = await conn.execute_query_dict(USER_SQL.format(where='u."id" = $1'), [user_id])
    if not rows:
        raise NotFound()
    row = rows[0]
    permissions = await conn.execute_query_dict(
        'SELECT pm."name" FROM "user_accounts" u JOIN "role_permissions" rp ON rp."role_id" = u."role_id" '
        'JOIN "permissions" pm ON pm."id" = rp."permission_id" WHERE u."id" = $1 ORDER BY pm."name"', [user_id])
    features = await conn.execute_query_dict(
        'SELECT f."name" FROM "subscription_plans" p JOIN "plan_features" pf ON pf."plan_id" = p."id" '
        'JOIN "features" f ON f."id" = pf."feature_id" WHERE p."name" = $1 ORDER BY f."name"', [row["plan"]])
    subscription = {"plan": row["plan"], "status": row["subscription_status"] or "active",
                    "ends_at": iso(row["ends_at"])}
    return Profile(user=user_from_row(row), permissions=[r["name"] for r in permissions],
                   features=[r["name"] for r in features], subscription=subscription)


async def update_display_name(*, user_id: str, display_name: str) -> User:
    """Change the caller's display name (the only field a user edits about themselves)."""
    updated, _ = await _db(None).execute_query(
        'UPDATE "user_accounts" SET "display_name" = $2, "updated_at" = now() '
        'WHERE "id" = $1 AND "deleted_at" IS NULL', [user_id, display_name])
    user = await get_user(user_id=user_id) if updated else None
    if user is None:
        raise NotFound()
    return user
