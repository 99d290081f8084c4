"""`manas360 maintenance prune-mail` and `prune-account-tokens`: old delivered mail and long
expired tokens go, in bounded batches; mail still waiting is never deleted."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from manas360.services import maintenance
from tests.operations.helpers import run_cli


@pytest.fixture
async def user_id(pg):
    uid = uuid.uuid4()
    await pg.execute("INSERT INTO user_accounts (id, email, password_hash, role_id) "
                     "SELECT $1, $2, 'x', id FROM roles WHERE name = 'user'", uid, f"prune-{uid.hex}@example.com")
    yield uid
    await pg.execute("DELETE FROM user_accounts WHERE id = $1", uid)


async def test_prune_mail_deletes_old_delivered_mail_only(pg):
    kind = f"t{uuid.uuid4().hex[:8]}"
    await pg.execute(
        "INSERT INTO mail_outbox (recipient, subject, body, kind, created_at, sent_at) SELECT 'a@example.com', 's', "
        "CASE WHEN sent IS NULL THEN 'waiting' END, $1, now() - interval '90 days', sent "
        "FROM unnest(ARRAY[now() - interval '40 days', now() - interval '40 days', now() - interval '40 days', "
        "now() - interval '1 day', NULL]::timestamptz[]) AS sent", kind)
    batches: list[int] = []
    result = await maintenance.run_job(conn=pg, job="prune-mail", mail_days=30, batch_size=2,
                                       on_batch=lambda rows, total: batches.append(rows))
    assert result.counts == {"mails delivered more than 30 days ago deleted": 3}
    assert batches == [2, 1]
    left = await pg.fetch("SELECT sent_at IS NULL AS waiting FROM mail_outbox WHERE kind = $1 ORDER BY id", kind)
    assert [r["waiting"] for r in left] == [False, True]  # the recent delivery, and the mail never delivered
    again = await maintenance.run_job(conn=pg, job="prune-mail", mail_days=30)
    assert again.counts == {"mails delivered more than 30 days ago deleted": 0}
    await pg.execute("DELETE FROM mail_outbox WHERE kind = $1", kind)


async def test_prune_account_tokens_deletes_long_expired_tokens(pg, user_id, environ):
    await pg.execute(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at) "
        "SELECT md5(random()::text) || md5(random()::text), $1, 'password_reset', now() - make_interval(days => d) "
        "FROM unnest(ARRAY[10, 8, -1]) AS d", user_id)
    result = await asyncio.to_thread(run_cli, environ, "maintenance", "prune-account-tokens", "--days", "7")
    assert result.returncode == 0, result.stderr
    assert "prune-account-tokens: 2 account tokens expired more than 7 days ago deleted" in result.stdout
    assert await pg.fetchval("SELECT count(*) FROM account_tokens WHERE user_id = $1", user_id) == 1
