"""`manas360 maintenance purge-deleted` and `replay-erasures`: erasing accounts whose deletion
grace is over, and doing it again after a restore from a backup taken before (docs/operations.md,
"Purging deleted accounts").

A batch is one transaction: lock up to `batch_size` due accounts (FOR UPDATE SKIP LOCKED,
re-checking `status` and `deletion_at` under the lock, so a cancel that commits first wins
and one in flight is left for the next run), delete every row that is the person's own,
erase the personal values of the audit entries about them (the entries and user ids stay),
turn the account into a tombstone (id, role and dates; no address, name or password; the
address is free at once), queue `user.deleted`, and add the ids to the erasure ledger. After
the commit their Redis keys go, and the ids are appended to ERASURE_LEDGER_PATH (a file kept
outside the database's backups). A run that stops keeps its finished batches; the next one
carries on (ledger rows not yet in the file are written first). A second run finds nothing.

After a restore the database may hold accounts the ledger file says were erased:
`replay-erasures` (and `manas360 serve`, before it serves) erases them again, by the same
statements, whatever their status.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import asyncpg
import orjson

from manas360.queries.ops import maintenance as maintenance_queries
from manas360.queries.ops import purge as queries
from manas360.queries.ops.purge import Due
from manas360.services.admin import audit
from manas360.services.integration import webhooks
from manas360.services.mail import messages as mail
from manas360.services.ops.maintenance import JobResult, OnBatch
from manas360.settings import Settings
from manas360.store import Store, StoreUnavailable
from manas360.store.erasure import Erased, erase_accounts

JOB = "purge-deleted"
REPLAY_JOB = "replay-erasures"
DEFAULT_BATCH_SIZE = 1000
LEDGER_EXPORT_BATCH = 10_000


async def purge_deleted(
    *,
    conn: asyncpg.Connection,
    settings: Settings,
    store: Store | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> JobResult:
    """Erase every account whose grace is over, `batch_size` per transaction, until none is left."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    counts: dict[str, int] = {"accounts erased": 0}
    counts["ledger entries written to the file"] = await export_ledger(conn=conn, settings=settings)
    batches = 0
    while True:
        erased = await _erase_batch(conn=conn, settings=settings, store=store, counts=counts, batch_size=batch_size)
        if not erased:
            break
        batches += 1
        counts["accounts erased"] += erased
        if on_batch is not None:
            on_batch(erased, counts["accounts erased"])
    if counts["accounts erased"]:  # the views hold copies of addresses and names
        await maintenance_queries.refresh_materialized_views(conn=conn)
    return JobResult(job=JOB, counts=counts, batches=batches)


async def _erase_batch(
    *,
    conn: asyncpg.Connection,
    settings: Settings,
    store: Store | None,
    counts: dict[str, int],
    batch_size: int,
    listed: list[str] | None = None,
) -> int:
    async with conn.transaction():
        if listed is None:
            due = await queries.pick_due(conn=conn, limit=batch_size)
        else:
            due = await queries.pick_listed(conn=conn, user_ids=listed)
        if not due:
            return 0
        accounts = await _erase(conn=conn, settings=settings, due=due, counts=counts, notify=listed is None)
    if store is not None:
        try:
            deleted = await erase_accounts(store, accounts=accounts)
        except StoreUnavailable:  # committed already; what is left holds no address and expires on its TTL
            counts["accounts whose Redis keys are left to expire"] = counts.get(
                "accounts whose Redis keys are left to expire", 0
            ) + len(accounts)
        else:
            counts["Redis keys deleted"] = counts.get("Redis keys deleted", 0) + deleted
    written = await export_ledger(conn=conn, settings=settings)
    counts["ledger entries written to the file"] = counts.get("ledger entries written to the file", 0) + written
    return len(due)


async def _erase(
    *, conn: asyncpg.Connection, settings: Settings, due: list[Due], counts: dict[str, int], notify: bool
) -> list[Erased]:
    """Every statement of one batch, in its transaction; what Redis must forget after the commit."""
    ids = [d.user_id for d in due]
    emails = [d.email.lower() for d in due]
    names = [d.display_name for d in due]
    sessions = await queries.session_ids(conn=conn, user_ids=ids)
    jtis = await queries.revoked_jtis(conn=conn, user_ids=ids)
    sources = await queries.sources(conn=conn, user_ids=ids)
    for what, n in (await queries.delete_own_rows(conn=conn, user_ids=ids, emails=emails)).items():
        counts[what] = counts.get(what, 0) + n
    counts["audit entries stripped of personal values"] = counts.get(
        "audit entries stripped of personal values", 0
    ) + await queries.scrub_audit(conn=conn, user_ids=ids, emails=emails, names=names)
    await queries.tombstone(conn=conn, user_ids=ids)
    await queries.add_to_ledger(conn=conn, user_ids=ids)
    await queries.audit_purged(conn=conn, user_ids=ids, action=audit.ACCOUNT_PURGED)
    if notify and webhooks.enabled(settings):
        await _queue_deleted(conn=conn, settings=settings, user_ids=ids)
    by_user: dict[str, Erased] = {d.user_id: Erased(user_id=d.user_id, email=d.email.lower()) for d in due}
    for user_id, session_id in sessions:
        by_user[user_id].session_ids.append(session_id)
    for user_id, source in sources:
        by_user[user_id].sources.append(source)
    for user_id, jti in jtis:
        by_user[user_id].jtis.append(jti)
    return list(by_user.values())


async def _queue_deleted(*, conn: asyncpg.Connection, settings: Settings, user_ids: list[str]) -> None:
    now = (await queries.database_now(conn=conn)).isoformat()
    message_ids = [f"msg_{uuid.uuid4().hex}" for _ in user_ids]
    payloads = [
        mail.seal(
            settings,
            recipient=message_id,
            body=orjson.dumps({"type": webhooks.USER_DELETED, "timestamp": now, "data": {"user_id": user_id}}).decode(),
        )
        for user_id, message_id in zip(user_ids, message_ids, strict=True)
    ]
    await queries.queue_deleted(
        conn=conn, user_ids=user_ids, message_ids=message_ids, kind=webhooks.USER_DELETED, payloads=payloads
    )


# --- the ledger outside the database ---------------------------------------------------------


async def export_ledger(*, conn: asyncpg.Connection, settings: Settings) -> int:
    """Append the ledger rows not yet in ERASURE_LEDGER_PATH to it (fsync'd), then mark them;
    the entries written. A crash between the two writes an id twice, which replay ignores."""
    path = settings.erasure_ledger_path
    if not path:
        return 0
    written = 0
    while rows := await queries.unexported(conn=conn, limit=LEDGER_EXPORT_BATCH):
        append_ledger(Path(path), ((row.user_id, row.erased_at.isoformat()) for row in rows))
        await queries.mark_exported(conn=conn, user_ids=[row.user_id for row in rows])
        written += len(rows)
    return written


def append_ledger(path: Path, entries: Iterable[tuple[str, str]]) -> None:
    data = "".join(f"{user_id} {erased_at}\n" for user_id, erased_at in entries).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ledger(path: Path) -> list[str]:
    """The user ids the file lists (each once, in file order); a torn last line is skipped."""
    if not path.exists():
        return []
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        first = line.split(" ", 1)[0]
        try:
            seen[str(uuid.UUID(first))] = None
        except ValueError:
            continue
    return list(seen)


async def replay_erasures(
    *,
    conn: asyncpg.Connection,
    settings: Settings,
    store: Store | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> JobResult:
    """Erase again every account the ledger file lists that this database still holds (a restore
    from before its purge), and record them all in the database's ledger."""
    started = time.monotonic()
    counts: dict[str, int] = {"ledger entries": 0, "accounts erased again": 0}
    if not settings.erasure_ledger_path:
        return JobResult(job=REPLAY_JOB, counts=counts)
    listed = read_ledger(Path(settings.erasure_ledger_path))
    counts["ledger entries"] = len(listed)
    batches = 0
    for start in range(0, len(listed), batch_size):
        chunk = listed[start : start + batch_size]
        pending = await queries.not_erased(conn=conn, user_ids=chunk)
        if not pending:
            continue
        erased = await _erase_batch(
            conn=conn, settings=settings, store=store, counts=counts, batch_size=batch_size, listed=pending
        )
        await queries.add_to_ledger(conn=conn, user_ids=pending)
        await queries.mark_exported(conn=conn, user_ids=pending)
        counts["accounts erased again"] += erased
        batches += 1
        if on_batch is not None:
            on_batch(erased, counts["accounts erased again"])
    if counts["accounts erased again"]:
        await maintenance_queries.refresh_materialized_views(conn=conn)
    return JobResult(job=REPLAY_JOB, counts=counts, batches=batches, elapsed_s=time.monotonic() - started)


async def replay_before_serving(settings: Settings) -> JobResult | None:
    """`manas360 serve`, before any worker starts: replay the ledger file (None when
    ERASURE_LEDGER_PATH is unset), so a database restored from an older backup never serves an
    account that was erased after the backup was taken."""
    if not settings.erasure_ledger_path:
        return None
    from manas360.configured_store import open_configured_store
    from manas360.services.ops.maintenance import connect
    from manas360.store import close_store

    store = open_configured_store(settings)
    try:
        async with connect(settings) as conn:
            return await replay_erasures(conn=conn, settings=settings, store=store)
    finally:
        await close_store(store)
