"""GET /me/export: a copy of every record held about the caller (GDPR articles 15 and 20).

Step-up; at most EXPORTS_PER_DAY per account per 24 hours (429 beyond, with the seconds until
the next); the owner is mailed each time (an export is a security notice: whoever holds a
session could take one). The document lists, by table, every row about the caller that any
table holds (manas360.queries.accounts.export.RECORDS_SQL: a table added without its entry
fails tests/lifecycle/test_export.py), with no hash, no sealed secret and no mail body; other
people appear by role only.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from manas360.clock import iso
from manas360.db import Database
from manas360.errors import RateLimited
from manas360.queries.accounts import export as queries
from manas360.security.jwt import VerifiedToken
from manas360.services.admin import audit
from manas360.services.auth import events, stepup
from manas360.services.auth.sessions import Client
from manas360.settings import Settings

EXPORTS_PER_DAY = 3


async def export(*, db: Database, settings: Settings, principal: VerifiedToken, client: Client) -> dict[str, Any]:
    """The caller's records, as one JSON-ready document."""
    async with db.transaction() as conn:
        # The row lock makes the daily count exact under concurrent requests.
        account, now = await stepup.lock_caller(conn, settings=settings, principal=principal, source=client.source)
        done, wait_s = await queries.exports_today(conn=conn, user_id=account.user_id, action=audit.DATA_EXPORTED)
        if done >= EXPORTS_PER_DAY:
            raise RateLimited(retry_after=math.ceil(wait_s), message="At most 3 exports a day")
        records = await queries.records(conn=conn, user_id=account.user_id, email=account.email)
        await audit.record(
            conn, action=audit.DATA_EXPORTED, actor_id=account.user_id, target_user_id=account.user_id, ip=client.ip
        )
        await events.notify(
            conn,
            settings=settings,
            user_id=account.user_id,
            email=account.email,
            notice="data_exported",
            client=client,
            when=now,
        )
    by_table = {each.table: [dict(row) for row in each.rows] for each in records}
    return {"generated_at": iso(now), "user_id": account.user_id, "records": _plain(by_table)}


def _plain(value: Any) -> Any:
    """JSON-ready: times as ISO-8601 UTC, ids and other values as strings where JSON has no type."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
