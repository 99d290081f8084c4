"""`manas360 warm-cache`: load the user context and revocation state of every active user
(or those seen in the last N days) into Redis, so their next requests run no SQL.

Reads in id order with a keyset cursor (short queries, no long transaction) and writes
each batch in one Redis pipeline. Safe while the service is live: it writes exactly what a
request's cache miss would write, and like a miss it reads each user's cache generation
before reading PostgreSQL, so an admin change that commits meanwhile is never overwritten
by the older state (store/entitlements.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tortoise import connections

from manas360.clock import Clock
from manas360.services.catalog import load_catalog
from manas360.services.entitlements import (
    CONTEXT_TTL_S,
    USER_STATE_SQL,
    loaded_ttl_ms,
    revocation_horizon_s,
    state_from_row,
)
from manas360.settings import Settings
from manas360.store import Store
from manas360.store.entitlements import read_generations, store_user_states
from manas360.store.reference import get_reference_version


@dataclass(slots=True)
class WarmReport:
    users: int = 0
    batches: int = 0
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.users / self.elapsed_s if self.elapsed_s else 0.0


async def count_candidates(*, active_days: int | None) -> int:
    rows = await connections.get("default").execute_query_dict(
        f'SELECT count(*) AS "n" FROM "user_accounts" u WHERE {_filter(active_days)}', [])
    n: int = rows[0]["n"]  # Tortoise's rows are dict[str, Any]: count(*) is a bigint
    return n


async def warm_cache(*, settings: Settings, store: Store, clock: Clock, active_days: int | None = None,
                     batch_size: int = 2000, on_batch: Callable[[int], None] = lambda done: None) -> WarmReport:
    """Warm every candidate user; `on_batch(done)` after each batch."""
    started = time.monotonic()
    report = WarmReport()
    await load_catalog(version=await get_reference_version(store))  # fail early if PostgreSQL is down
    last_id = "00000000-0000-0000-0000-000000000000"
    conn = connections.get("default")
    while True:
        ids = await conn.execute_query_dict(
            f'SELECT u."id" FROM "user_accounts" u WHERE {_filter(active_days)} AND u."id" > $1 '
            f'ORDER BY u."id" LIMIT {int(batch_size)}', [last_id])
        if not ids:
            break
        user_ids = [str(row["id"]) for row in ids]
        generations = await read_generations(store, user_ids=user_ids)  # before PostgreSQL: see the module doc
        rows = await conn.execute_query_dict(USER_STATE_SQL.format(where='u."id" = ANY($1::uuid[])'),
                                             [user_ids, revocation_horizon_s(settings)])
        states = [state_from_row(row, settings=settings, clock=clock) for row in rows if not row["deleted"]]
        await store_user_states(store, states=[state.fill(generations[state.user_id]) for state in states],
                                context_ttl_s=CONTEXT_TTL_S, loaded_ttl_ms=loaded_ttl_ms(settings))
        last_id = user_ids[-1]
        report.users += len(states)
        report.batches += 1
        on_batch(report.users)
    report.elapsed_s = time.monotonic() - started
    return report


def _filter(active_days: int | None) -> str:
    where = 'u."deleted_at" IS NULL AND u."status" = \'active\''
    if active_days is not None:
        where += f' AND u."last_login_at" > now() - make_interval(days => {int(active_days)})'
    return where
