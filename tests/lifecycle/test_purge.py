"""`maintenance purge-deleted`: after the grace, every personal value of the account is gone
from every table (found from the database catalog, not a hand list), from a `pg_dump` of the
whole database and from Redis; audit rows stay with the user id; the address is free again;
a second run finds nothing; a cancel racing the purge at the grace boundary ends one way."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from manas360.queries.ops import purge as purge_queries
from manas360.services.ops import purge
from manas360.settings import load_settings
from tests.auth.mfa_helpers import enable
from tests.auth.passkey_helpers import authenticator_for, enrol, register_options, verify_email
from tests.fixtures import environment
from tests.fixtures.accounts import API, PASSWORD, register
from tests.fixtures.environment import REDIS_URL
from tests.fixtures.outbox import mail_bodies

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")

# Where an erased account's id may still appear, and why: the tombstone, the audit trail
# (kept with the user id, personal values erased), the erasure ledger, the webhook counter and
# the `user.deleted` event itself. Every other table/column that refers to a user must hold
# no row of theirs.
MAY_KEEP_THE_ID = {
    ("audit_logs", "actor_id"),
    ("audit_logs", "target_user_id"),
    ("audit_logs_archive", "actor_id"),
    ("audit_logs_archive", "target_user_id"),
    ("erasure_ledger", "user_id"),
    ("webhook_sequences", "user_id"),
    ("outbox", "user_id"),
}


async def _raw(database: str) -> asyncpg.Connection:
    return await asyncpg.connect(database.replace("postgres://", "postgresql://", 1))


async def _make_a_full_account(client, pg, settings, superadmin_headers) -> tuple[str, str, str]:
    """An account with a record in as many tables as the API can put one: sessions, MFA, passkeys,
    failed logins, mails, audit before/after values, a plan, a role change; then deleted."""
    name = f"Erasable {uuid.uuid4().hex[:10]}"
    account = await register(client, display_name=name)
    await client.post(f"{API}/auth/login", json={"email": account.email, "password": "wrong wrong wrong"})
    await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    await client.post(f"{API}/auth/password-reset", json={"email": account.email})
    await client.patch(f"{API}/me", json={"display_name": name}, headers=account.headers)
    for path, body in (
        (f"/users/{account.id}/role", {"role": "subscriber"}),
        (f"/users/{account.id}/subscription", {"plan": "premium"}),
    ):
        r = await client.put(f"{API}/admin{path}", json=body, headers=superadmin_headers)
        assert r.status_code == 200, r.text
    # A passkey named after its owner (names are personal too), and a ceremony left in flight.
    await verify_email(pg, account)
    await enrol(client, account, authenticator_for(settings), name=f"{name}'s phone")
    await register_options(client, account, name=name)
    await enable(client, account)
    r = await client.delete(f"{API}/me", headers=account.headers)
    assert r.status_code == 202, r.text
    # While pending: a reset request for the address (audited, unattributed) sends nothing.
    await client.post(f"{API}/auth/password-reset", json={"email": account.email})
    await pg.execute(
        "UPDATE user_accounts SET deletion_at = clock_timestamp() - interval '1 second' WHERE id = $1", account.id
    )
    return account.id, account.email, name


def _pg_dump(database_url: str) -> str:
    tool = shutil.which("pg_dump") or next(
        (str(Path(d) / "pg_dump") for d in PG_BIN_DIRS if (Path(d) / "pg_dump").is_file()), None
    )
    if tool is None:
        pytest.fail("pg_dump is not installed (apt-get install postgresql-client)")
    done = subprocess.run([tool, "--data-only", database_url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _redis_text(prefix: str) -> str:
    """Every key under the run's prefix and every value of it, as one text (bytes as latin-1)."""
    redis = Redis.from_url(REDIS_URL)
    parts: list[bytes] = []
    try:
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            parts.append(key)
            kind = (await redis.type(key)).decode()
            if kind == "string":
                parts.append(await redis.get(key) or b"")
            elif kind == "hash":
                parts.extend(b"%s=%s" % item for item in (await redis.hgetall(key)).items())
            elif kind == "zset":
                parts.extend(await redis.zrange(key, 0, -1))
            elif kind == "set":
                parts.extend(await redis.smembers(key))
            elif kind == "list":
                parts.extend(await redis.lrange(key, 0, -1))
    finally:
        await redis.aclose()
    return b"\n".join(parts).decode("latin-1")


async def test_purge_erases_every_personal_value_and_frees_the_address(
    app, client, pg, settings, database, redis_raw, superadmin_headers, tmp_path
):
    user_id, email, name = await _make_a_full_account(client, pg, settings, superadmin_headers)
    ledger = tmp_path / "erasures.ledger"
    job_settings = load_settings({**_environ(settings), "ERASURE_LEDGER_PATH": str(ledger)})
    conn = await _raw(database)
    try:
        result = await purge.purge_deleted(conn=conn, settings=job_settings, store=app.ctx.deps.store)
        again = await purge.purge_deleted(conn=conn, settings=job_settings, store=app.ctx.deps.store)
        columns = await purge_queries.columns_referencing_users(conn=conn)
    finally:
        await conn.close()
    assert result.counts["accounts erased"] >= 1 and again.counts["accounts erased"] == 0
    assert user_id in ledger.read_text()

    # Schema-driven: every table/column the catalog says refers to a user.
    assert ("sessions", "user_id") in columns and ("audit_logs", "target_user_id") in columns
    leftovers = {}
    for table, column in columns:
        rows = await pg.fetch(f'SELECT t::text AS "row" FROM "{table}" t WHERE "{column}" = $1', uuid.UUID(user_id))
        if rows and (table, column) not in MAY_KEEP_THE_ID:
            leftovers[(table, column)] = len(rows)
        for row in rows:
            text = row["row"].lower()
            assert email not in text and name.lower() not in text, (table, column, row["row"])
    assert not leftovers
    assert (
        await pg.fetchval("SELECT count(*) FROM audit_logs WHERE target_user_id = $1", uuid.UUID(user_id)) > 3
    )  # the trail stays, with the id

    # Nowhere in the whole database, nor in Redis (nor the address's lockout hash).
    dump = _pg_dump(database.replace("postgres://", "postgresql://", 1)).lower()
    assert email not in dump and name.lower() not in dump
    redis_text = (await _redis_text(settings.redis_prefix)).lower()
    digest = hashlib.sha256(email.encode()).hexdigest()
    assert email not in redis_text and name.lower() not in redis_text and digest not in redis_text

    # The address is free at once.
    again_registered = await client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert again_registered.status_code == 201, again_registered.text


def _environ(settings) -> dict[str, str]:
    return {**environment.test_environ(), "REDIS_PREFIX": settings.redis_prefix, "DATABASE_URL": settings.database_url}


@pytest.mark.parametrize("attempt", range(4))
async def test_purge_and_a_cancel_at_the_grace_boundary_end_one_way(app, client, pg, settings, database, attempt):
    account = await register(client)
    assert (await client.delete(f"{API}/me", headers=account.headers)).status_code == 202
    [mail] = await mail_bodies(pg, settings, user_id=account.id, kind="deletion_scheduled")
    token = re.search(r"cancel-deletion#token=([A-Za-z0-9_-]+)", mail).group(1)
    await pg.execute(
        "UPDATE user_accounts SET deletion_at = clock_timestamp() + make_interval(secs => $2) WHERE id = $1",
        account.id,
        0.05 * attempt,
    )
    conn = await _raw(database)
    try:

        async def run_purge():
            await asyncio.sleep(0.05 * attempt)
            return await purge.purge_deleted(conn=conn, settings=settings, store=app.ctx.deps.store)

        cancel, result = await asyncio.gather(
            client.post(f"{API}/auth/account-deletion/cancel", json={"token": token, "password": PASSWORD}),
            run_purge(),
        )
    finally:
        await conn.close()
    row = await pg.fetchrow("SELECT status, deleted_at FROM user_accounts WHERE id = $1", account.id)
    if cancel.status_code == 200:
        assert row["status"] == "active" and row["deleted_at"] is None
    else:
        assert cancel.json()["error"] == "InvalidToken", cancel.text
        # Not cancelled: erased now, or still pending (skipped while the cancel held its lock).
        assert row["status"] == "pending_deletion"
        if row["deleted_at"] is None:
            conn = await _raw(database)
            try:
                await pg.execute(
                    "UPDATE user_accounts SET deletion_at = clock_timestamp() - interval '1 s' WHERE id = $1",
                    account.id,
                )
                await purge.purge_deleted(conn=conn, settings=settings, store=app.ctx.deps.store)
            finally:
                await conn.close()
            assert await pg.fetchval("SELECT deleted_at FROM user_accounts WHERE id = $1", account.id) is not None
    assert result.skipped is False


async def _pending_past_grace(client, pg) -> str:
    account = await register(client)
    assert (await client.delete(f"{API}/me", headers=account.headers)).status_code == 202
    await pg.execute(
        "UPDATE user_accounts SET deletion_at = clock_timestamp() - interval '1 second' WHERE id = $1", account.id
    )
    return account.id


async def test_an_interrupted_run_keeps_its_batches_and_the_next_finishes_and_tells_the_webhooks(
    app, client, pg, settings, database
):
    ids = [await _pending_past_grace(client, pg) for _ in range(3)]
    job_settings = load_settings(
        {**_environ(settings), "WEBHOOK_URL": "http://127.0.0.1:9/hook", "WEBHOOK_SECRET": "whsec_" + "A" * 44}
    )

    class Stop(Exception):
        pass

    def stop_after_first(rows, total):
        raise Stop

    conn = await _raw(database)
    try:
        with pytest.raises(Stop):
            await purge.purge_deleted(
                conn=conn, settings=job_settings, store=app.ctx.deps.store, batch_size=1, on_batch=stop_after_first
            )
        erased = await pg.fetchval(
            "SELECT count(*) FROM user_accounts WHERE id = ANY($1) AND deleted_at IS NOT NULL", ids
        )
        assert erased == 1  # the finished batch stays
        result = await purge.purge_deleted(conn=conn, settings=job_settings, store=app.ctx.deps.store, batch_size=1)
    finally:
        await conn.close()
    assert result.counts["accounts erased"] >= 2
    assert await pg.fetchval("SELECT count(*) FROM user_accounts WHERE id = ANY($1) AND deleted_at IS NULL", ids) == 0
    events = await pg.fetch(
        "SELECT user_id FROM outbox WHERE channel = 'webhook' AND kind = 'user.deleted' AND user_id = ANY($1)", ids
    )
    assert sorted(str(e["user_id"]) for e in events) == sorted(ids)
