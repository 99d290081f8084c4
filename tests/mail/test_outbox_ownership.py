"""The outbox under a slow SMTP server and dead senders, with real server processes: every
mail is delivered exactly once; a sender killed mid-DATA leaves its mail to the next one
after the lease; and a copy of the database taken while mail waits holds no usable link."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections import Counter

import pytest

from tests.fixtures.accounts import API, register, unique_email
from tests.fixtures.gates import eventually
from tests.fixtures.outbox import mail_bodies
from tests.fixtures.server import start_server
from tests.fixtures.smtp import TOKEN, SmtpServer
from tests.mail.conftest import mail_environ

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_smtp():
    server = SmtpServer()
    server.inbox.delay_s = 1.0
    server.start()
    yield server
    server.stop()


def _senders_environ(environ, smtp, **overrides):
    # A short send timeout makes the lease short (2 x 2 + 10 = 14 s), and twenty mails at one
    # second each keep one sender busy beyond it: the case where ownership matters.
    return mail_environ(environ, smtp, **{"MAIL_SEND_TIMEOUT_S": "2", "MAIL_POLL_S": "0.2", **overrides})


async def _queue(pg, kind: str, count: int) -> list[int]:
    rows = await pg.fetch(
        "INSERT INTO outbox (recipient, subject, body, kind) "
        "SELECT 'slow' || n || '@example.com', 'Slow ' || n, 'body ' || n, $1 FROM generate_series(1, $2) n "
        "RETURNING id",
        kind,
        count,
    )
    return [row["id"] for row in rows]


async def test_two_senders_behind_a_slow_smtp_server_deliver_every_mail_exactly_once(
    environ, database, pg, slow_smtp, tmp_path
):
    kind = f"slow{os.getpid()}"
    ids = await _queue(pg, kind, 20)
    servers = [start_server(_senders_environ(environ, slow_smtp), workers=1, tmp_dir=tmp_path) for _ in range(2)]
    try:
        await eventually(
            lambda: pg.fetchval("SELECT bool_and(sent_at IS NOT NULL) FROM outbox WHERE id = ANY($1)", ids),
            what="all twenty delivered",
            timeout=90,
        )
    finally:
        for server in servers:
            server.stop()
    delivered = Counter(mid for mid in slow_smtp.inbox.message_ids() if any(f"<outbox-{i}@" in mid for i in ids))
    assert len(delivered) == 20 and set(delivered.values()) == {1}, delivered
    attempts = await pg.fetch("SELECT attempts FROM outbox WHERE id = ANY($1)", ids)
    assert {row["attempts"] for row in attempts} == {1}
    await pg.execute("DELETE FROM outbox WHERE kind = $1", kind)


async def test_a_sender_killed_mid_data_leaves_its_mail_to_the_next_sender_once(
    environ, database, pg, slow_smtp, tmp_path
):
    slow_smtp.inbox.delay_s = 3.0
    kind = f"killed{os.getpid()}"
    (mail_id,) = await _queue(pg, kind, 1)
    marker = f"<outbox-{mail_id}@"
    first = start_server(_senders_environ(environ, slow_smtp, MAIL_SEND_TIMEOUT_S="5"), workers=1, tmp_dir=tmp_path)
    try:
        await eventually(lambda: _started(slow_smtp, marker), what="the first sender in DATA", timeout=30)
    finally:
        os.killpg(first.process.pid, signal.SIGKILL)  # the worker too, mid-DATA
        first.process.wait(10)
    lease_end = await pg.fetchval("SELECT next_attempt_at FROM outbox WHERE id = $1", mail_id)
    assert await pg.fetchval("SELECT sent_at IS NULL AND attempts = 1 FROM outbox WHERE id = $1", mail_id)
    slow_smtp.inbox.delay_s = 0.2
    second = start_server(_senders_environ(environ, slow_smtp), workers=1, tmp_dir=tmp_path)
    try:
        await eventually(
            lambda: pg.fetchval("SELECT sent_at IS NOT NULL FROM outbox WHERE id = $1", mail_id),
            what="the mail delivered by the next sender",
            timeout=60,
        )
    finally:
        second.stop()
    sent_at = await pg.fetchval("SELECT sent_at FROM outbox WHERE id = $1", mail_id)
    assert sent_at >= lease_end  # not before the dead sender's lease ended
    assert [mid for mid in slow_smtp.inbox.message_ids() if marker in mid] == [f"{marker}manas360.test>"]
    await pg.execute("DELETE FROM outbox WHERE kind = $1", kind)


async def _started(smtp: SmtpServer, marker: str) -> bool:
    with smtp.inbox.lock:
        return any(marker in started for started in smtp.inbox.started)


async def test_a_database_copy_taken_while_mail_waits_holds_no_usable_link(client, pg, settings, database):
    """SMTP is not configured for this app: every link mail waits. Every token-looking string
    of a pg_dump is tried against the API, and none opens anything."""
    account = await register(client)
    assert (await client.post(f"{API}/auth/password-reset", json={"email": account.email})).status_code == 202
    other = unique_email("dump")
    assert (
        await client.post(f"{API}/auth/register", json={"email": other, "password": "a long passphrase"})
    ).status_code == 201
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM outbox WHERE user_id = $1 AND sent_at IS NULL AND payload_sealed IS NOT NULL",
            account.id,
        )
        == 2
    )
    dump = await asyncio.to_thread(
        subprocess.run, ["pg_dump", "--no-owner", database], capture_output=True, text=True, timeout=120, check=True
    )
    text = dump.stdout
    assert "#token=" not in text and "reset-password" not in text
    # The live links exist (the app's own key opens them), and not one of them is in the copy.
    live = [
        TOKEN.search(body).group(1)
        for kind in ("password_reset", "email_verification")
        for body in await mail_bodies(pg, settings, user_id=account.id, kind=kind)
    ]
    assert len(live) == 2 and not any(token in text for token in live)
    candidates = set(re.findall(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,64}(?![A-Za-z0-9_-])", text))
    opened = []
    for candidate in candidates:
        reset = await client.post(
            f"{API}/auth/password-reset/confirm", json={"token": candidate, "new_password": "a dump-made passphrase"}
        )
        verify = await client.post(f"{API}/auth/verify-email", json={"token": candidate})
        if reset.status_code != 401 or verify.status_code != 401:
            opened.append(candidate)
    assert opened == []
