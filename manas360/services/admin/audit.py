"""The audit trail: who did what to whom, from where, in which request.

`record` writes an entry, `list_entries` pages through them for administrators. Entries
are written inside the transaction of the change they describe, so a change and its audit
entry commit or roll back together.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.clock import iso
from manas360.cursors import Listing, decode_position, encode_cursor
from manas360.db import Database
from manas360.errors import ValidationError
from manas360.logs import request_id_var
from manas360.queries.admin import audit as audit_queries
from manas360.queries.admin.audit import Entry

REGISTER = "auth.register"
LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
ACCOUNT_LOCKED = "auth.account_locked"
ACCOUNT_UNLOCKED = "auth.account_unlocked"
LOGOUT = "auth.logout"
LOGOUT_ALL = "auth.logout_all"
SESSIONS_REVOKED = "auth.sessions_revoked"
SESSION_REVOKED = "auth.session_revoked"
PASSWORD_CHANGED = "auth.password_changed"
REFRESH_REUSE = "auth.refresh_reuse_detected"
SUPERADMIN_SEEDED = "seed.superadmin"

PASSWORD_RESET_REQUESTED = "auth.password_reset_requested"
PASSWORD_RESET = "auth.password_reset"
EMAIL_VERIFICATION_SENT = "auth.email_verification_sent"
EMAIL_VERIFIED = "auth.email_verified"
REAUTHENTICATED = "auth.reauthenticated"

# Multi-factor sign-in (admin.mfa_reset is the administrator's).
MFA_CHALLENGED = "auth.mfa_challenged"
MFA_SETUP = "auth.mfa_setup"
MFA_ENABLED = "auth.mfa_enabled"
MFA_CONFIRM_FAILED = "auth.mfa_confirm_failed"
MFA_VERIFIED = "auth.mfa_verified"
MFA_FAILED = "auth.mfa_failed"
MFA_DISABLED = "auth.mfa_disabled"
MFA_RECOVERY_CODES = "auth.mfa_recovery_codes_regenerated"
MFA_RESET = "admin.mfa_reset"
PASSKEY_ADDED = "auth.passkey_added"
PASSKEY_RENAMED = "auth.passkey_renamed"
PASSKEY_REMOVED = "auth.passkey_removed"
PASSKEY_COUNTER_REGRESSED = "auth.passkey_counter_regressed"
"""A passkey's signature counter went backwards (a cloned authenticator): the login was refused."""
DELETION_SCHEDULED = "account.deletion_scheduled"
DELETION_CANCELLED = "account.deletion_cancelled"
ACCOUNT_PURGED = "account.purged"
EMAIL_CHANGE_REQUESTED = "account.email_change_requested"
EMAIL_CHANGED = "account.email_changed"
EMAIL_CHANGE_CANCELLED = "account.email_change_cancelled"
EMAIL_CHANGE_REVERTED = "account.email_change_reverted"
DATA_EXPORTED = "account.data_exported"

_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


async def record(
    conn: BaseDBAsyncClient,
    *,
    action: str,
    actor_id: str | None,
    target_user_id: str | None,
    ip: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append one audit entry, tagged with the current request id."""
    request_id = request_id_var.get()
    await audit_queries.insert_entry(
        conn=conn,
        actor_id=actor_id,
        target_user_id=target_user_id,
        action=action,
        before=_dumps(before),
        after=_dumps(after),
        ip=ip[:64],
        request_id="" if request_id == "-" else request_id[:64],
    )


def _dumps(value: dict[str, Any] | None) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


async def list_entries(
    *, db: Database, limit: int, cursor: str | None, user_id: str | None, action: str | None
) -> Listing:
    """Entries newest first, optionally for one target user and/or one action; the cursor
    is the last entry's id, so entries written while paging never shift a page."""
    before_id: int | None = None
    if cursor:
        (last_id,) = decode_position(cursor, arity=1)
        # A bigserial id: anything else (a bool, a number beyond bigint) is not ours and would
        # overflow in asyncpg as a 500.
        if not isinstance(last_id, int) or isinstance(last_id, bool) or not _BIGINT_MIN <= last_id <= _BIGINT_MAX:
            raise ValidationError({"cursor": "is not a valid cursor"})
        before_id = last_id
    target_user_id: str | None = None
    if user_id:
        try:
            target_user_id = str(uuid.UUID(user_id))
        except ValueError:
            raise ValidationError({"user_id": "must be a UUID"}) from None
    rows = await audit_queries.list_entries(
        conn=db.connection, before_id=before_id, target_user_id=target_user_id, action=action, limit=limit + 1
    )
    items = [_entry(row) for row in rows[:limit]]
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return Listing(items=items, next_cursor=next_cursor)


def _entry(row: Entry) -> dict[str, Any]:
    return {
        "id": row.id,
        "actor_id": _str(row.actor_id),
        "target_user_id": _str(row.target_user_id),
        "action": row.action,
        "before": _loads(row.before),
        "after": _loads(row.after),
        "ip": row.ip,
        "request_id": row.request_id,
        "created_at": iso(row.created_at),
    }


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None


def _loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value
