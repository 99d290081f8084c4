"""`manas360 maintenance prune-mail` and `prune-account-tokens`: old delivered mail and long
expired tokens go, in bounded batches; mail still waiting is never deleted."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from manas360.services.ops import maintenance
from tests.operations.helpers import run_cli


@pytest.fixture
async def user_id(pg):
    uid = uuid.uuid4()
    await pg.execute(
        "INSERT INTO user_accounts (id, email, password_hash, role_id) "
        "SELECT $1, $2, 'x', id FROM roles WHERE name = 'user'",
        uid,
        f"prune-{uid.hex}@example.com",
    )
    yield uid
    await pg.execute("DELETE FROM user_accounts WHERE id = $1", uid)


async def test_prune_mail_deletes_old_delivered_mail_only(pg):
    kind = f"t{uuid.uuid4().hex[:8]}"
    await pg.execute(
        "INSERT INTO outbox (recipient, subject, body, kind, created_at, sent_at) SELECT 'a@example.com', 's', "
        "CASE WHEN sent IS NULL THEN 'waiting' END, $1, now() - interval '90 days', sent "
        "FROM unnest(ARRAY[now() - interval '40 days', now() - interval '40 days', now() - interval '40 days', "
        "now() - interval '1 day', NULL]::timestamptz[]) AS sent",
        kind,
    )
    batches: list[int] = []
    result = await maintenance.run_job(
        conn=pg, job="prune-mail", mail_days=30, batch_size=2, on_batch=lambda rows, total: batches.append(rows)
    )
    assert result.counts["mails delivered more than 30 days ago deleted"] == 3
    assert batches[:2] == [2, 1]
    left = await pg.fetch("SELECT sent_at IS NULL AS waiting FROM outbox WHERE kind = $1 ORDER BY id", kind)
    assert [r["waiting"] for r in left] == [False, True]  # the recent delivery, and the mail never delivered
    again = await maintenance.run_job(conn=pg, job="prune-mail", mail_days=30)
    assert again.counts["mails delivered more than 30 days ago deleted"] == 0
    await pg.execute("DELETE FROM outbox WHERE kind = $1", kind)


async def test_prune_mail_discards_waiting_mail_whose_link_died_and_deletes_old_discarded_and_dead_rows(pg, user_id):
    """Rows of every state: only a mail still worth sending is left waiting, with its body."""
    tokens = await pg.fetch(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at, used_at) "
        "SELECT md5(random()::text) || md5(random()::text), $1, 'password_reset', now() + e, u "
        "FROM (VALUES (interval '1 hour', NULL::timestamptz), (interval '1 hour', now()), "
        "(interval '-1 minute', NULL)) AS v(e, u) RETURNING id",
        user_id,
    )
    live, used, expired = (row["id"] for row in tokens)
    kind = f"t{uuid.uuid4().hex[:8]}"
    rows = await pg.fetch(
        "INSERT INTO outbox (recipient, subject, payload_sealed, kind, user_id, token_id, carries_token, "
        "discarded_at, dead_at) SELECT 'p@example.com', 's', "
        "CASE WHEN d IS NULL AND g IS NULL THEN '\\x01'::bytea END, $1, $2, t, t IS NOT NULL, d, g "
        "FROM (VALUES ($3::bigint, NULL::timestamptz, NULL::timestamptz), ($4, NULL, NULL), ($5, NULL, NULL), "
        "(NULL, now() - interval '40 days', NULL), (NULL, NULL, now() - interval '40 days'), "
        "(NULL, NULL, now() - interval '1 day')) AS v(t, d, g) RETURNING id",
        kind,
        user_id,
        live,
        used,
        expired,
    )
    ids = [row["id"] for row in rows]
    result = await maintenance.run_job(conn=pg, job="prune-mail", mail_days=30)
    assert result.counts["mails discarded more than 30 days ago deleted"] >= 1
    assert result.counts["mails given up more than 30 days ago deleted"] >= 1
    assert result.counts["waiting mails whose link is no longer valid discarded"] >= 2
    left = {
        r["id"]: r
        for r in await pg.fetch(
            "SELECT id, discarded_at IS NOT NULL AS discarded, payload_sealed IS NULL AS emptied FROM outbox "
            "WHERE kind = $1",
            kind,
        )
    }
    assert (left[ids[0]]["discarded"], left[ids[0]]["emptied"]) == (False, False)  # its link is live: it waits
    assert all(left[i]["discarded"] and left[i]["emptied"] for i in ids[1:3])  # used, expired: never sent
    assert ids[3] not in left and ids[4] not in left and ids[5] in left  # old discarded / dead rows go
    await pg.execute("DELETE FROM outbox WHERE kind = $1", kind)


async def test_prune_account_tokens_deletes_long_expired_tokens(pg, user_id, environ):
    await pg.execute(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at) "
        "SELECT md5(random()::text) || md5(random()::text), $1, 'password_reset', now() - make_interval(days => d) "
        "FROM unnest(ARRAY[10, 8, -1]) AS d",
        user_id,
    )
    result = await asyncio.to_thread(run_cli, environ, "maintenance", "prune-account-tokens", "--days", "7")
    assert result.returncode == 0, result.stderr
    assert "prune-account-tokens: 2 account tokens expired more than 7 days ago deleted" in result.stdout
    assert await pg.fetchval("SELECT count(*) FROM account_tokens WHERE user_id = $1", user_id) == 1
