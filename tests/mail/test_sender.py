"""The sender on its own (no app delivering beside it): failures and backoff while SMTP is
down, and the development console backend."""

from __future__ import annotations

import pytest
from loguru import logger
from prometheus_client import REGISTRY

from manas360.services.mail import messages as mail
from manas360.services.mail.outbox import Outbox, build_transport
from manas360.settings import load_settings
from tests.fixtures.accounts import unique_email
from tests.fixtures.gates import eventually
from tests.fixtures.smtp import SmtpServer, body_of
from tests.fixtures.tls import make_certificates
from tests.mail.conftest import mail_environ


def _failed(kind: str) -> float:
    return REGISTRY.get_sample_value("manas360_mail_failures_total", {"kind": kind}) or 0.0


async def _queue(pg, recipient: str, *, body: str = "hello") -> int:
    return await pg.fetchval(
        "INSERT INTO outbox (recipient, subject, body, kind) VALUES ($1, 'Test', $2, 'test') RETURNING id",
        recipient,
        body,
    )


async def test_while_smtp_is_down_mail_waits_and_is_retried_with_backoff(environ, database, pg, db):
    down = SmtpServer()  # never started: connections are refused
    settings = load_settings(mail_environ(environ, down, MAIL_RETRY_MAX_S="60"))
    sender = Outbox(settings=settings, transport=build_transport(settings), db=db)
    recipient = unique_email("down")
    mail_id = await _queue(pg, recipient)
    await pg.execute("UPDATE outbox SET next_attempt_at = now() - interval '1 hour' WHERE id = $1", mail_id)
    failures = _failed("test")
    # Other rows may be due too (the sender takes the oldest first): run until ours was tried.
    await eventually(lambda: _tried(sender, pg, mail_id), what="the mail tried once")
    row = await pg.fetchrow("SELECT *, next_attempt_at - now() AS wait FROM outbox WHERE id = $1", mail_id)
    assert row["sent_at"] is None and row["body"] == "hello" and row["attempts"] == 1
    assert "Connect" in row["last_error"] or "refused" in row["last_error"].lower()
    assert 0 < row["wait"].total_seconds() <= 1
    assert sender.status == "failing"
    assert _failed("test") >= failures + 1
    await pg.execute("UPDATE outbox SET next_attempt_at = now() - interval '1 second' WHERE id = $1", mail_id)
    await eventually(lambda: _tried(sender, pg, mail_id, attempts=2), what="the second try")
    wait = await pg.fetchval("SELECT next_attempt_at - now() FROM outbox WHERE id = $1", mail_id)
    assert 1 < wait.total_seconds() <= 2  # doubled
    await pg.execute("DELETE FROM outbox WHERE id = $1", mail_id)


async def _tried(sender: Outbox, pg, mail_id: int, *, attempts: int = 1) -> bool:
    await sender.deliver_due()
    return await pg.fetchval("SELECT attempts FROM outbox WHERE id = $1", mail_id) >= attempts


async def test_the_console_backend_prints_the_whole_mail_in_development(environ, database, pg, db):
    settings = load_settings({**environ, "ENV": "development", "MAIL_BACKEND": "console"})
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    try:
        sender = Outbox(settings=settings, transport=build_transport(settings), db=db)
        token = "console-token-" + unique_email().split("@")[0]
        recipient = unique_email("console")
        draft = mail.password_reset(settings, token=token)
        mail_id = await pg.fetchval(
            "INSERT INTO outbox (recipient, subject, body, kind) VALUES ($1, $2, $3, $4) RETURNING id",
            recipient,
            draft.subject,
            draft.body,
            draft.kind,
        )
        await eventually(lambda: _delivered(sender, pg, mail_id), what="the console delivery")
    finally:
        logger.remove(sink)
    printed = "".join(lines)
    assert f"http://127.0.0.1:8000/reset-password#token={token}" in printed
    assert recipient in printed and "Reset your MANAS360 password" in printed
    assert sender.status == "console"


async def _delivered(sender: Outbox, pg, mail_id: int) -> bool:
    await sender.deliver_due()
    return await pg.fetchval("SELECT sent_at IS NOT NULL FROM outbox WHERE id = $1", mail_id)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("smtp-tls"), name="smtp")


# aiosmtpd warns when AUTH is allowed without STARTTLS; with smtps:// the session is TLS from its first byte.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_delivery_over_starttls_and_smtps_with_auth_verifies_the_certificate(
    environ, database, pg, db, certificates, mode
):
    server = SmtpServer(mode=mode, certificates=certificates, auth=True)
    server.start()
    try:
        settings = load_settings(mail_environ(environ, server))
        assert settings.smtp.username == "mailer" and settings.smtp.password == "s3cret p@ss/word"
        assert "s3cret" not in repr(settings) and "s3cret" not in repr(settings.smtp)
        sender = Outbox(settings=settings, transport=build_transport(settings), db=db)
        recipient = unique_email(mode)
        await _queue(pg, recipient, body=f"over {mode}")
        await eventually(lambda: _drained(sender, server, recipient), what=f"delivery over {mode}")
        (message,) = server.inbox.to(recipient)
        assert body_of(message).strip() == f"over {mode}"
    finally:
        server.stop()


async def test_a_certificate_from_an_unknown_ca_is_refused(environ, database, pg, db, certificates, tmp_path):
    server = SmtpServer(mode="tls", certificates=certificates)
    server.start()
    try:
        other_ca = make_certificates(tmp_path, name="other").ca
        settings = load_settings(
            mail_environ(environ, server, SMTP_URL=f"smtps://127.0.0.1:{server.port}?ssl_ca_certs={other_ca}")
        )
        sender = Outbox(settings=settings, transport=build_transport(settings), db=db)
        mail_id = await _queue(pg, unique_email("mitm"))
        await eventually(lambda: _tried(sender, pg, mail_id), what="the attempt")
        row = await pg.fetchrow("SELECT sent_at, last_error FROM outbox WHERE id = $1", mail_id)
        assert row["sent_at"] is None and "certificate" in row["last_error"].lower()
        assert server.inbox.messages == []
        await pg.execute("DELETE FROM outbox WHERE id = $1", mail_id)
    finally:
        server.stop()


async def _drained(sender: Outbox, server: SmtpServer, recipient: str) -> bool:
    await sender.deliver_due()
    return bool(server.inbox.to(recipient))
