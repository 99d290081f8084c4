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

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from manas360.clock import iso
from manas360.db import Database
from manas360.errors import EmailTaken, NotFound
from manas360.models import ACCOUNT_ACTIVE
from manas360.queries.accounts import users as user_queries
from manas360.queries.accounts.users import Credentials, UserRow
from manas360.services.access import catalog_defaults as reference
from manas360.services.access.catalog import Catalog

MAX_EMAIL_CHARS = 254
MAX_DISPLAY_NAME_CHARS = 100
_EMAIL_UNIQUE_INDEX = "uq_user_accounts_email_live"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(rf"[a-z0-9!#$%&'*+/=?^_`{{|}}~.-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")


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
        return {
            "id": self.id,
            "email": self.email,
            "display_name": self.display_name,
            "role": self.role,
            "privilege_level": self.privilege_level,
            "plan": self.plan,
            "created_at": iso(self.created_at),
            "status": self.status,
            "email_verified": self.email_verified,
            "mfa_enabled": self.mfa_enabled,
        }


@dataclass(frozen=True, slots=True)
class Profile:
    user: User
    permissions: list[str]
    features: list[str]
    subscription: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.user.as_dict(),
            "permissions": self.permissions,
            "features": self.features,
            "subscription": self.subscription,
        }


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


def user_from_row(row: UserRow) -> User:
    return User(
        id=str(row.id),
        email=row.email,
        display_name=row.display_name,
        role=row.role,
        privilege_level=row.privilege_level,
        plan=row.plan,
        created_at=row.created_at,
        status=row.status,
        email_verified=row.email_verified,
        mfa_enabled=row.mfa_enabled,
        tokens_valid_after=row.tokens_valid_after,
    )


async def get_user(*, conn: BaseDBAsyncClient, user_id: str) -> User | None:
    """The live user with role and effective plan, or None."""
    row = await user_queries.fetch_user(conn=conn, user_id=user_id)
    return user_from_row(row) if row else None


async def get_held_user(conn: BaseDBAsyncClient, *, user_id: str) -> User:
    """The user this transaction created or holds locked and confirmed live, so present:
    its absence is a broken invariant (RuntimeError), not an answer for the client."""
    user = await get_user(user_id=user_id, conn=conn)
    if user is None:
        raise RuntimeError(f"user {user_id} is not readable in the transaction that holds it")
    return user


async def get_credentials(
    *, conn: BaseDBAsyncClient, source: str, known_source_s: int, email: str | None = None, user_id: str | None = None
) -> Credentials | None:
    """The live account with a normalised address (or an id) as seen from `source`, or None."""
    return await user_queries.fetch_credentials(
        conn=conn, source=source, known_source_s=known_source_s, email=email, user_id=user_id
    )


async def lock_credentials(
    conn: BaseDBAsyncClient, *, user_id: str, source: str = "", known_source_s: int = 0
) -> Credentials | None:
    """Lock the user row (first in the lock order) and read its credentials as they are now."""
    return await user_queries.lock_credentials(conn=conn, user_id=user_id, source=source, known_source_s=known_source_s)


async def rehash_password(conn: BaseDBAsyncClient, *, user_id: str, version: int, new_hash: str) -> bool:
    """Store the same password at a new cost, if it is still at `version` (the version stays)."""
    return await user_queries.rehash_password(conn=conn, user_id=user_id, version=version, new_hash=new_hash)


async def set_password(conn: BaseDBAsyncClient, *, user_id: str, version: int, new_hash: str) -> bool:
    """Store a new password if the current one is still at `version`; the version moves."""
    return await user_queries.set_password(conn=conn, user_id=user_id, version=version, new_hash=new_hash)


async def insert_user(conn: BaseDBAsyncClient, *, email: str, password_hash: str, display_name: str) -> str:
    """Insert an account with the default role; EmailTaken when the address is in use."""
    user_id = str(uuid.uuid4())
    try:
        await user_queries.insert_user(
            conn=conn,
            user_id=user_id,
            email=email,
            password_hash=password_hash,
            display_name=display_name,
            role=reference.DEFAULT_ROLE,
        )
    except IntegrityError as exc:
        # Two registrations racing for one address: the partial unique index decides.
        if getattr(exc.__cause__, "constraint_name", None) == _EMAIL_UNIQUE_INDEX:
            raise EmailTaken() from None
        raise
    return user_id


async def get_profile(*, db: Database, user_id: str, catalog: Catalog) -> Profile:
    """The caller as GET /me shows them: user, permissions, features and subscription. One
    statement: the permissions of the role and the features of the plan the row names come
    from the live reference catalog the guard has already checked (the same versioned copy
    every gated route judges by), not from two more queries."""
    row = await user_queries.fetch_user(conn=db.connection, user_id=user_id)
    if row is None:
        raise NotFound()
    permissions = sorted(catalog.permissions_of(row.role))
    features = sorted(catalog.features_of(row.plan))
    subscription = {"plan": row.plan, "status": row.subscription_status or "active", "ends_at": iso(row.ends_at)}
    return Profile(user=user_from_row(row), permissions=permissions, features=features, subscription=subscription)


async def update_display_name(*, db: Database, user_id: str, display_name: str) -> User:
    """Change the caller's display name (the only field a user edits about themselves)."""
    updated = await user_queries.update_display_name(conn=db.connection, user_id=user_id, display_name=display_name)
    user = await get_user(conn=db.connection, user_id=user_id) if updated else None
    if user is None:
        raise NotFound()
    return user
