"""The outbox sender: delivers queued mail, retrying with backoff while SMTP fails.

Every worker runs one (started and stopped with the app). Each round claims up to
BATCH_SIZE due rows in one short statement (`FOR UPDATE SKIP LOCKED`: two senders never
take the same row, and never wait for each other) and leases them for LEASE_S by moving
their `next_attempt_at`; then it delivers them one by one, recording each delivery
(`sent_at`) or failure (`last_error`, next attempt after a backoff that doubles from 1 s up
to MAIL_RETRY_MAX_S). A sender killed mid-delivery leaves its rows due again when the
lease ends, so no mail is lost; the price is that a mail the SMTP server accepted just
before the kill (its delivery not yet recorded) is sent again: at least once, never twice
on purpose. Between rounds a sender sleeps MAIL_POLL_S, or less when woken (`notify`).

Without a transport (no SMTP_URL outside development) nothing runs: mail waits in the
outbox, and /health reports mail as `unconfigured`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from loguru import logger
from tortoise import connections

from manas360 import metrics
from manas360.queries import mail as queries
from manas360.settings import Settings
from manas360.smtp import ConsoleTransport, MailTransport, OutgoingMail, SmtpTransport
from manas360.tortoise_context import activate

if TYPE_CHECKING:
    from tortoise.context import TortoiseContext

BATCH_SIZE = 20
SEND_TIMEOUT_S = 120.0
"""The longest one delivery may take, all SMTP steps together."""
LEASE_S = 4 * SEND_TIMEOUT_S
"""How long a claimed row belongs to its sender: far beyond a delivery, so a live sender
never loses a row to another one."""
ROUND_RETRY_MAX_S = 30.0
"""Longest pause between rounds while rounds keep failing (PostgreSQL down)."""
STOP_GRACE_S = 10.0
"""How long stopping waits for a delivery in progress before cancelling it."""
UNCONFIGURED, CONSOLE, OK, FAILING = "unconfigured", "console", "ok", "failing"


def build_transport(settings: Settings) -> MailTransport | None:
    """SMTP when SMTP_URL is set; the console backend in development; otherwise none."""
    if settings.smtp is not None:
        return SmtpTransport(settings.smtp, mail_from=settings.mail_from)
    if settings.env == "development":
        return ConsoleTransport(mail_from=settings.mail_from)
    return None


def backoff_s(*, attempts: int, max_s: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4, ... up to max_s."""
    return float(min(max_s, 2 ** min(max(attempts - 1, 0), 30)))


class Outbox:
    """One worker's sender; building it does no I/O."""

    def __init__(self, *, settings: Settings, transport: MailTransport | None) -> None:
        self.settings = settings
        self.transport = transport
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_failed = False

    @property
    def status(self) -> str:
        """What /health shows: unconfigured, console, ok, or failing (this worker's last attempt)."""
        if self.transport is None:
            return UNCONFIGURED
        if self.transport.name == CONSOLE:
            return CONSOLE
        return FAILING if self._last_failed else OK

    def notify(self) -> None:
        """Look for due mail now instead of at the next poll."""
        self._wake.set()

    def start(self, *, orm: TortoiseContext) -> asyncio.Task[None] | None:
        """Start the sender task (none without a transport)."""
        if self.transport is None:
            return None
        self._stopping = False
        return asyncio.get_running_loop().create_task(self.run(orm=orm), name="mail-sender")

    async def stop(self, task: asyncio.Task[None] | None) -> None:
        """Let a delivery in progress finish (bounded), then end the task."""
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self, *, orm: TortoiseContext) -> None:
        """Deliver rounds until stopped; a round that fails (PostgreSQL down) is retried."""
        activate(orm)
        failed_rounds = 0
        while not self._stopping:
            pause = self.settings.mail_poll_s
            try:
                delivered = await self.deliver_due()
                failed_rounds = 0
            # The sender must outlive any failure of a round (PostgreSQL restarting, a
            # connection reset): the rows stay in the outbox and a later round retries,
            # the pause doubling (up to ROUND_RETRY_MAX_S) while the failures go on.
            except Exception as exc:
                failed_rounds += 1
                pause = min(max(ROUND_RETRY_MAX_S, pause), pause * 2 ** min(failed_rounds - 1, 10))
                logger.warning("mail sender round failed ({}); retrying in {:.1f} s", type(exc).__name__, pause)
                delivered = 0
            if delivered >= BATCH_SIZE or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()

    async def deliver_due(self) -> int:
        """One round: claim due mail and deliver each; how many were claimed."""
        if self.transport is None:
            return 0
        conn = connections.get("default")
        rows = await queries.claim_due(conn=conn, limit=BATCH_SIZE, lease_s=LEASE_S)
        for row in rows:
            await self._deliver(conn, row)
        return len(rows)

    async def _deliver(self, conn: Any, row: dict[str, Any]) -> None:
        assert self.transport is not None
        mail = OutgoingMail(id=row["id"], recipient=row["recipient"], subject=row["subject"], body=row["body"],
                            kind=row["kind"])
        try:
            await asyncio.wait_for(self.transport.send(mail), SEND_TIMEOUT_S)
        # Whatever the transport raised (refused connection, TLS failure, an SMTP error
        # reply, a timeout), the mail stays queued and is tried again later.
        except Exception as exc:
            retry_in = backoff_s(attempts=row["attempts"], max_s=self.settings.mail_retry_max_s)
            error = f"{type(exc).__name__}: {exc}"[:500]
            await queries.mark_failed(conn=conn, mail_id=mail.id, error=error, retry_in_s=retry_in)
            self._last_failed = True
            metrics.MAIL_FAILURES.labels(mail.kind).inc()
            logger.warning("mail {} ({}) not delivered, attempt {}: {}; next attempt in {:.0f} s", mail.id, mail.kind,
                           row["attempts"], error, retry_in)
            return
        await queries.mark_sent(conn=conn, mail_id=mail.id)
        self._last_failed = False
        metrics.MAILS_SENT.labels(mail.kind).inc()
        logger.info("mail {} ({}) delivered after {} attempt(s)", mail.id, mail.kind, row["attempts"])
