"""The mail suite: a real SMTP server in process, and an app that delivers to it."""

from __future__ import annotations

import pytest

from manas360.settings import load_settings
from tests.fixtures.app import client_for, running_app
from tests.fixtures.smtp import SmtpServer

PUBLIC_BASE_URL = "https://app.example.test/base"


def mail_environ(environ: dict[str, str], smtp: SmtpServer, **overrides: str) -> dict[str, str]:
    """The run's environment, delivering to `smtp` with quick polls and retries."""
    return {
        **environ,
        "SMTP_URL": smtp.url,
        "MAIL_FROM": "MANAS360 <no-reply@manas360.test>",
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "MAIL_POLL_S": "0.05",
        "MAIL_RETRY_MAX_S": "1",
        **overrides,
    }


@pytest.fixture(scope="module", autouse=True)
async def quiet_outbox(pg):
    """Mail queued by earlier suites (every registration queues one) is marked delivered
    before a mail module starts, so its senders deliver only what its own tests queue
    instead of first working through hundreds of strangers' mails."""
    await skip_queued_mail(pg)


async def skip_queued_mail(pg) -> None:
    await pg.execute(
        "UPDATE outbox SET sent_at = clock_timestamp(), body = NULL, payload_sealed = NULL, "
        "last_error = 'skipped by the test suite' WHERE sent_at IS NULL"
    )


@pytest.fixture(scope="module")
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mail_settings(environ, smtp):
    return load_settings(mail_environ(environ, smtp))


@pytest.fixture(scope="module")
async def mail_app(mail_settings, database, redis_raw):
    async with running_app(mail_settings) as app:
        yield app


@pytest.fixture
async def mail_client(mail_app):
    async with client_for(mail_app) as client:
        yield client
