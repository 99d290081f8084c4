"""The outbox and its sender: mail committed with its token, delivered once over real SMTP,
retried with backoff while the server is down, leased so that a dead sender's row returns."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from manas360.services.outbox import BATCH_SIZE, Outbox, backoff_s, build_transport
from manas360.settings import load_settings
from manas360.smtp import ConsoleTransport, SmtpTransport
from tests.fixtures.accounts import API, register, unique_email
from tests.fixtures.gates import eventually
from tests.fixtures.smtp import body_of, token_in
from tests.mail.conftest import PUBLIC_BASE_URL, mail_environ


def _sent(kind: str) -> float:
    return REGISTRY.get_sample_value("manas360_mails_sent_total", {"kind": kind}) or 0.0


async def _queue(pg, recipient: str, *, body: str = "hello") -> int:
    return await pg.fetchval(
        "INSERT INTO mail_outbox (recipient, subject, body, kind) VALUES ($1, 'Test', $2, 'test') RETURNING id",
        recipient, body)


async def _queue_leased(pg, recipient: str) -> int:
    """A row as a sender leaves it after claiming it (attempt counted, lease taken) and dying
    before delivery. Written in one statement: a row inserted due and leased afterwards could be
    claimed by the app's own sender in between."""
    return await pg.fetchval(
        "INSERT INTO mail_outbox (recipient, subject, body, kind, attempts, next_attempt_at) "
        "VALUES ($1, 'Test', 'hello', 'test', 1, now() + interval '1 hour') RETURNING id",
        recipient)


async def test_registration_mail_arrives_once_with_its_link_and_the_row_records_delivery(
        mail_client, smtp, pg):
    before = _sent("email_verification")
    account = await register(mail_client)
    (message,) = await smtp.wait_for(account.email)
    assert message["Subject"] == "Confirm your email address"
    assert message["From"] == "MANAS360 <no-reply@manas360.test>"
    token = token_in(message)
    assert f"{PUBLIC_BASE_URL}/verify-email#token={token}" in body_of(message)
    assert len(token) >= 43  # 256 bits, base64url
    await eventually(lambda: pg.fetchval("SELECT sent_at IS NOT NULL FROM mail_outbox WHERE recipient = $1",
                                         account.email), what="delivery recorded")
    row = await pg.fetchrow("SELECT * FROM mail_outbox WHERE recipient = $1", account.email)
    assert row["body"] is None and row["attempts"] == 1 and row["kind"] == "email_verification"
    assert message["Message-ID"] == f"<outbox-{row['id']}@manas360.test>"
    assert _sent("email_verification") >= before + 1
    assert len(smtp.inbox.to(account.email)) == 1


async def test_a_rolled_back_registration_queues_no_mail(client, pg):
    account = await register(client)
    taken = await client.post(f"{API}/auth/register", json={"email": account.email, "password": "x" * 12})
    assert taken.status_code == 409
    assert await pg.fetchval("SELECT count(*) FROM mail_outbox WHERE recipient = $1", account.email) == 1


async def test_two_senders_deliver_each_mail_exactly_once(mail_app, mail_settings, smtp, pg, db):
    recipient = unique_email("race")
    ids = [await _queue(pg, recipient, body=f"message {n}") for n in range(BATCH_SIZE + 5)]
    senders = [Outbox(settings=mail_settings, transport=build_transport(mail_settings)) for _ in range(3)]
    # The app's own sender races these three too.
    await asyncio.gather(*(sender.deliver_due() for sender in senders for _ in range(3)))
    messages = await smtp.wait_for(recipient, count=len(ids))
    await eventually(lambda: pg.fetchval("SELECT bool_and(sent_at IS NOT NULL) FROM mail_outbox WHERE id = ANY($1)",
                                         ids), what="every delivery recorded")
    assert sorted(body_of(m).strip() for m in messages) == sorted(f"message {n}" for n in range(len(ids)))
    assert await pg.fetchval("SELECT max(attempts) FROM mail_outbox WHERE id = ANY($1)", ids) == 1
    assert len(smtp.inbox.to(recipient)) == len(ids)


def test_backoff_doubles_up_to_the_maximum():
    assert [backoff_s(attempts=n, max_s=60) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_s(attempts=10_000, max_s=300) == 300


async def test_a_row_leased_by_a_sender_that_died_is_delivered_after_the_lease(mail_app, smtp, pg):
    recipient = unique_email("lease")
    mail_id = await _queue_leased(pg, recipient)
    await asyncio.sleep(0.3)  # several poll rounds of the app's sender: the lease holds
    assert smtp.inbox.to(recipient) == []
    await pg.execute("UPDATE mail_outbox SET next_attempt_at = now() WHERE id = $1", mail_id)  # the lease ends
    await smtp.wait_for(recipient)
    await eventually(lambda: pg.fetchval("SELECT attempts = 2 AND sent_at IS NOT NULL FROM mail_outbox "
                                         "WHERE id = $1", mail_id), what="the second attempt recorded")


def test_the_transport_follows_the_settings(environ, smtp):
    assert isinstance(build_transport(load_settings(mail_environ(environ, smtp))), SmtpTransport)
    development = {**environ, "ENV": "development"}
    assert isinstance(build_transport(load_settings(development)), ConsoleTransport)
    assert build_transport(load_settings(environ)) is None  # ENV=test, no SMTP_URL: mail waits


async def test_health_reports_mail_without_failing_readiness(client, mail_client):
    unconfigured = await client.get("/health")
    assert unconfigured.status_code == 200
    assert (unconfigured.json()["status"], unconfigured.json()["mail"]) == ("ok", "unconfigured")
    assert (await client.get("/health/ready")).status_code == 200
    configured = await mail_client.get("/health")
    assert configured.json()["mail"] in ("ok", "failing")
