"""Drill: the SMTP server goes away mid-way and comes back.

While it is down, registrations and reset requests still answer at once (their mail
commits to the outbox with them); the senders of both workers retry with backoff. Once it
is back, every waiting mail is delivered, each exactly once (one message per outbox row,
told apart by the Message-ID naming the row)."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from tests.drills.helpers import report, serving
from tests.fixtures.accounts import API, PASSWORD, unique_email
from tests.fixtures.gates import eventually
from tests.fixtures.smtp import SmtpServer
from tests.mail.conftest import skip_queued_mail

pytestmark = pytest.mark.slow
BEFORE, DURING = 3, 6
ANSWER_BOUND_S = 2.0


async def _register(http: httpx.AsyncClient, email: str) -> float:
    started = time.monotonic()
    response = await http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return time.monotonic() - started


async def _request_reset(http: httpx.AsyncClient, email: str) -> float:
    started = time.monotonic()
    response = await http.post(f"{API}/auth/password-reset", json={"email": email})
    assert (response.status_code, response.json()) == (202, {})
    return time.monotonic() - started


async def test_mail_waits_while_smtp_is_down_and_is_delivered_once_when_it_returns(
    drill_environ, tmp_path, pg, record_property
):
    await skip_queued_mail(pg)  # only this drill's mail is waiting
    smtp = SmtpServer()
    smtp.start()
    environ = drill_environ(
        SMTP_URL=smtp.url, MAIL_POLL_S="0.2", MAIL_RETRY_MAX_S="1", METRICS_ALLOWED_CIDRS="127.0.0.1/32"
    )
    try:
        with serving(environ, tmp_path) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                before = [unique_email("before") for _ in range(BEFORE)]
                for email in before:
                    await _register(http, email)
                for email in before:
                    await smtp.wait_for(email)

                smtp.stop()
                stopped_at = time.monotonic()
                during = [unique_email("during") for _ in range(DURING)]
                latencies = [await _register(http, email) for email in during]
                latencies += [await _request_reset(http, email) for email in during[::2]]
                assert max(latencies) < ANSWER_BOUND_S, latencies

                async def retried() -> bool:  # every waiting mail tried and failed at least twice
                    rows = await pg.fetch(
                        "SELECT attempts, sent_at, last_error FROM outbox WHERE recipient = ANY($1)", during
                    )
                    return all(r["attempts"] >= 2 and r["sent_at"] is None and r["last_error"] for r in rows)

                await eventually(retried, timeout=30, what="the waiting mails retried")
                waiting = await pg.fetchval(
                    "SELECT count(*) FROM outbox WHERE recipient = ANY($1) AND sent_at IS NULL", during
                )
                assert waiting == DURING + len(during[::2])
                assert not [m for email in during for m in smtp.inbox.to(email)]
                failures = [
                    line
                    for line in (await http.get("/metrics")).text.splitlines()
                    if line.startswith("manas360_mail_failures_total")
                ]
                assert failures and any(float(line.rsplit(" ", 1)[1]) >= 1 for line in failures)

                smtp.start()  # the same port, the same inbox
                restarted_at = time.monotonic()
                for email in during:
                    await smtp.wait_for(email, count=2 if email in during[::2] else 1, timeout=30)
                delivered_s = time.monotonic() - restarted_at

                async def recorded() -> bool:
                    return await pg.fetchval(
                        "SELECT bool_and(sent_at IS NOT NULL) FROM outbox WHERE recipient = ANY($1)", before + during
                    )

                await eventually(recorded, timeout=15, what="every delivery recorded")
                attempts = await pg.fetchval("SELECT max(attempts) FROM outbox WHERE recipient = ANY($1)", during)
    finally:
        smtp.stop()

    for email in before + during:
        subjects = sorted(m["Subject"] for m in smtp.inbox.to(email))
        expected = ["Confirm your email address"] + (["Reset your MANAS360 password"] if email in during[::2] else [])
        assert subjects == sorted(expected), (email, subjects)
    ids = Counter(m["Message-ID"] for m in smtp.inbox.messages)
    assert not [mid for mid, n in ids.items() if n > 1]  # no outbox row was sent twice
    report(
        record_property,
        "mail outage",
        {
            "mails_waiting": waiting,
            "max_attempts": attempts,
            "outage_s": round(restarted_at - stopped_at, 3),
            "delivered_after_restart_s": round(delivered_s, 3),
            "slowest_answer_during_outage_s": round(max(latencies), 3),
        },
    )
