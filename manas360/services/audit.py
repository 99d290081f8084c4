"""The audit trail: who did what to whom, from where, in which request.

Entries are written inside the transaction of the change they describe, so a change and
its audit entry commit or roll back together.
"""

from __future__ import annotations

from typing import Any

import orjson
from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.logs import request_id_var

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


async def record(conn: BaseDBAsyncClient, *, action: str, actor_id: str | None, target_user_id: str | None,
                 ip: str = "", before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
    """Append one audit entry, tagged with the current request id."""
    request_id = request_id_var.get()
    await conn.execute_query(
        'INSERT INTO "audit_logs" ("actor_id", "target_user_id", "action", "before", "after", "ip", "request_id") '
        'VALUES ($1, $2, $3, $4, $5, $6, $7)',
        [actor_id, target_user_id, action, _json(before), _json(after), ip[:64],
         "" if request_id == "-" else request_id[:64]])


def _json(value: dict[str, Any] | None) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None
