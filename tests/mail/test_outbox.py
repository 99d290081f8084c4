"""The outbox and its sender: mail committed with its token, delivered once over real SMTP,
retried with backoff while the server is down, leased so that a dead sender's row returns."""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest
from prometheus_client import REGISTRY

from manas360.services.mail.outbox import BATCH_SIZE, Outbox, backoff_s, build_mail_courier, build_transport
from manas360.settings import SettingsError, load_settings
from manas360.smtp import ConsoleTransport, SmtpTransport
from tests.fixtures.accounts import API, register, unique_email
from tests.fixtures.gates import eventually
from tests.fixtures.smtp import body_of, token_in
from tests.mail.conftest import PUBLIC_BASE_URL, mail_environ


def _sent(kind: str) -> float:
    return REGISTRY.get_sample_value("manas360_mails_sent_total", {"kind": kind}) or 0.0


async def _queue(pg, recipient: str, *, body: str = "hello") -> int:
    return await pg.fetchval(
        "INSERT INTO outbox (recipient, subject, body, kind) VALUES ($1, 'Test', $2, 'test') RETURNING id",
        recipient,
        body,
    )


async def _queue_leased(pg, recipient: str) -> int:
    """A row as a sender leaves it after claiming it (attempt counted, lease taken) and dying
    before delivery. Written in one statement: a row inserted due and leased afterwards could be
    claimed by the app's own sender in between."""
    return await pg.fetchval(
        "INSERT INTO outbox (recipient, subject, body, kind, attempts, next_attempt_at) "
        "VALUES ($1, 'Test', 'hello', 'test', 1, now() + interval '1 hour') RETURNING id",
        recipient,
    )


async def test_registration_mail_arrives_once_with_its_link_and_the_row_records_delivery(mail_client, smtp, pg):
    before = _sent("email_verification")
    account = await register(mail_client)
    (message,) = await smtp.wait_for(account.email)
    assert message["Subject"] == "Confirm your email address"
    assert message["From"] == "MANAS360 <no-reply@manas360.test>"
    token = token_in(message)
    assert f"{PUBLIC_BASE_URL}/verify-email#token={token}" in body_of(message)
    assert len(token) >= 43  # 256 bits, base64url
    await eventually(
        lambda: pg.fetchval("SELECT sent_at IS NOT NULL FROM outbox WHERE recipient = $1", account.email),
        what="delivery recorded",
    )
    row = await pg.fetchrow("SELECT * FROM outbox WHERE recipient = $1", account.email)
    assert row["body"] is None and row["attempts"] == 1 and row["kind"] == "email_verification"
    assert message["Message-ID"] == f"<outbox-{row['id']}@manas360.test>"
    assert _sent("email_verification") >= before + 1
    assert len(smtp.inbox.to(account.email)) == 1


async def test_a_rolled_back_registration_queues_no_mail(client, pg):
    account = await register(client)
    taken = await client.post(f"{API}/auth/register", json={"email": account.email, "password": "x" * 12})
    assert taken.status_code == 409
    assert await pg.fetchval("SELECT count(*) FROM outbox WHERE recipient = $1", account.email) == 1


async def test_two_senders_deliver_each_mail_exactly_once(mail_app, mail_settings, smtp, pg, db):
    recipient = unique_email("race")
    ids = [await _queue(pg, recipient, body=f"message {n}") for n in range(BATCH_SIZE + 5)]
    senders = [Outbox(settings=mail_settings, courier=build_mail_courier(mail_settings), db=db) for _ in range(3)]
    # The app's own sender races these three too.
    await asyncio.gather(*(sender.deliver_due() for sender in senders for _ in range(3)))
    messages = await smtp.wait_for(recipient, count=len(ids))
    await eventually(
        lambda: pg.fetchval("SELECT bool_and(sent_at IS NOT NULL) FROM outbox WHERE id = ANY($1)", ids),
        what="every delivery recorded",
    )
    assert sorted(body_of(m).strip() for m in messages) == sorted(f"message {n}" for n in range(len(ids)))
    assert await pg.fetchval("SELECT max(attempts) FROM outbox WHERE id = ANY($1)", ids) == 1
    assert len(smtp.inbox.to(recipient)) == len(ids)


def test_backoff_doubles_up_to_the_maximum():
    assert [backoff_s(attempts=n, max_s=60) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_s(attempts=10_000, max_s=300) == 300


async def test_a_row_leased_by_a_sender_that_died_is_delivered_after_the_lease(mail_app, smtp, pg):
    recipient = unique_email("lease")
    mail_id = await _queue_leased(pg, recipient)
    await asyncio.sleep(0.3)  # several poll rounds of the app's sender: the lease holds
    assert smtp.inbox.to(recipient) == []
    await pg.execute("UPDATE outbox SET next_attempt_at = now() WHERE id = $1", mail_id)  # the lease ends
    await smtp.wait_for(recipient)
    await eventually(
        lambda: pg.fetchval("SELECT attempts = 2 AND sent_at IS NOT NULL FROM outbox WHERE id = $1", mail_id),
        what="the second attempt recorded",
    )


@pytest.mark.parametrize(
    ("env", "backend", "with_smtp", "terminal", "expected"),
    [
        ("test", "auto", True, False, SmtpTransport),
        ("development", "auto", True, True, SmtpTransport),
        ("development", "auto", False, True, ConsoleTransport),  # scripts/run.sh in a terminal: links printed
        ("development", "auto", False, False, None),  # ENV forgotten on a server: no live link in the logs
        ("development", "console", False, False, ConsoleTransport),
        ("test", "console", True, False, ConsoleTransport),
        ("test", "auto", False, False, None),
        ("development", "none", True, True, None),
        ("test", "smtp", False, True, None),
    ],
)
def test_the_transport_follows_the_settings(environ, smtp, monkeypatch, env, backend, with_smtp, terminal, expected):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    values = mail_environ(environ, smtp) if with_smtp else dict(environ)
    transport = build_transport(load_settings({**values, "ENV": env, "MAIL_BACKEND": backend}))
    assert transport is None if expected is None else isinstance(transport, expected)


def test_production_refuses_the_console_backend(environ):
    with pytest.raises(SettingsError, match="MAIL_BACKEND"):
        load_settings({**environ, "ENV": "production", "MAIL_BACKEND": "console"})


async def test_health_reports_mail_without_failing_readiness(client, mail_client):
    unconfigured = await client.get("/health")
    assert unconfigured.status_code == 200
    assert (unconfigured.json()["status"], unconfigured.json()["mail"]) == ("ok", "unconfigured")
    assert (await client.get("/health/ready")).status_code == 200
    configured = await mail_client.get("/health")
    assert configured.json()["mail"] in ("ok", "failing")


async def test_a_queued_mail_wakes_the_sender_without_waiting_for_its_poll(environ, smtp, database, redis_raw, pg):
    """LISTEN/NOTIFY: with the poll an hour apart, a new mail still leaves at once."""
    from tests.fixtures.app import client_for, running_app

    settings = load_settings(mail_environ(environ, smtp, MAIL_POLL_S="3600"))
    async with running_app(settings) as app, client_for(app) as client:
        await eventually(
            lambda: pg.fetchval("SELECT count(*) > 0 FROM pg_stat_activity WHERE query ILIKE 'LISTEN%outbox%'"),
            what="the sender listening",
        )
        first = await register(client)  # delivered by the first round or by its notice: either way, the
        await smtp.wait_for(first.email)  # sender has finished a round and now waits on its hour-long poll
        second = await register(client)
        (message,) = await smtp.wait_for(second.email, timeout=5)
        assert message["Subject"] == "Confirm your email address"


async def test_a_mail_undelivered_past_the_max_age_is_a_dead_letter_in_health_and_metrics(
    environ, smtp, database, redis_raw, pg, db, client
):
    settings = load_settings(mail_environ(environ, smtp, OUTBOX_MAX_AGE_S="60"))
    sender = Outbox(settings=settings, courier=build_mail_courier(settings), db=db)
    kind = f"dead{uuid.uuid4().hex[:6]}"
    # Older than every sender's max age, not only this one's: a sender of another app of this
    # run (default OUTBOX_MAX_AGE_S) must not deliver it either, only give it up.
    mail_id = await pg.fetchval(
        "INSERT INTO outbox (recipient, subject, body, kind, created_at, next_attempt_at) "
        "VALUES ('late@example.com', 'Late', 'body', $1, now() - interval '2 days', now()) RETURNING id",
        kind,
    )
    before = REGISTRY.get_sample_value("manas360_outbox_dead_letters_total", {"kind": kind}) or 0
    await sender.deliver_due()
    row = await pg.fetchrow("SELECT sent_at, dead_at, body FROM outbox WHERE id = $1", mail_id)
    assert row["sent_at"] is None and row["dead_at"] is not None and row["body"] is None  # given up, not sent
    assert smtp.inbox.to("late@example.com") == []
    assert REGISTRY.get_sample_value("manas360_outbox_dead_letters_total", {"kind": kind}) == before + 1
    assert (REGISTRY.get_sample_value("manas360_outbox_rows", {"state": "dead"}) or 0) >= 1
    assert (await client.get("/health")).json()["outbox"]["dead"] >= 1
    await pg.execute("DELETE FROM outbox WHERE kind = $1", kind)
