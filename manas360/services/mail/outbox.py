"""The outbox sender: delivers queued mail exactly as far as it owns it, retrying with
backoff while SMTP fails.

Every worker runs one (started and stopped with the app). A round claims up to BATCH_SIZE
due rows in one short statement (`FOR UPDATE SKIP LOCKED`: two senders never take the same
row, and never wait for each other) under a fresh lease token, then delivers them one by
one. Right before delivering a row the sender renews its lease on it (a compare-and-set on
its lease token, which also counts the attempt): a row whose claim lease ran out while
earlier rows were slow, and which another sender then claimed, is skipped, never sent
twice. The renewed lease is longer than a delivery may take (`MAIL_SEND_TIMEOUT_S`, after
which the delivery is abandoned), so no other sender can take the row while it is being
sent; recording the delivery or the failure is a compare-and-set on the lease token too. A
sender killed mid-delivery leaves its row to the next sender when the lease ends: at least
once, and twice only if the SMTP server accepted a message in the instant before the kill.

A mail's body is sealed at rest and opened only to be sent. A mail that carries a one-time
token is discarded instead of sent once its token is no longer live (used, voided by a
security event or a newer link, expired). A row still undelivered after OUTBOX_MAX_AGE_S is
a dead letter (`/health`, `manas360_outbox_dead_letters`).

New rows wake every sender at once (PostgreSQL LISTEN/NOTIFY on a connection of the
sender's own, reopened with backoff if it drops); the poll every MAIL_POLL_S stays as the
fallback. Without a transport (see MAIL_BACKEND) nothing runs: mail waits in the outbox,
and /health reports mail as `unconfigured`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from typing import TYPE_CHECKING, Any

from loguru import logger

from manas360 import metrics
from manas360.db import Database
from manas360.queries.mail import outbox as queries
from manas360.queries.mail.outbox import Claimed
from manas360.services.mail import messages as mail
from manas360.settings import Settings
from manas360.smtp import ConsoleTransport, MailTransport, OutgoingMail, SmtpTransport

if TYPE_CHECKING:
    pass

BATCH_SIZE = 20
ROUND_RETRY_MAX_S = 30.0
"""Longest pause between rounds while rounds keep failing (PostgreSQL down)."""
LISTEN_RETRY_MAX_S = 30.0
"""Longest pause before reopening the LISTEN connection while it keeps failing."""
STOP_GRACE_S = 10.0
"""How long stopping waits for a delivery in progress before cancelling it."""
DEAD_PER_ROUND = 100
UNCONFIGURED, CONSOLE, OK, FAILING = "unconfigured", "console", "ok", "failing"


def build_transport(settings: Settings) -> MailTransport | None:
    """SMTP when SMTP_URL is set (MAIL_BACKEND auto or smtp); the console backend when asked
    for, or in development when the service runs in a terminal; otherwise none. A deployment
    that forgot ENV never prints live links into its logs."""
    backend = settings.mail_backend
    if backend == "none":
        return None
    if settings.smtp is not None and backend in ("auto", "smtp"):
        return SmtpTransport(settings.smtp, mail_from=settings.mail_from)
    if backend == "console" or (backend == "auto" and settings.env == "development" and sys.stderr.isatty()):
        return ConsoleTransport(mail_from=settings.mail_from)
    return None


def backoff_s(*, attempts: int, max_s: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4, ... up to max_s."""
    return float(min(max_s, 2 ** min(max(attempts - 1, 0), 30)))


def lease_s(settings: Settings) -> float:
    """How long a sender owns a row it is about to deliver: beyond any delivery."""
    return 2 * settings.mail_send_timeout_s + 10


class Outbox:
    """One worker's sender; building it does no I/O."""

    def __init__(self, *, settings: Settings, transport: MailTransport | None, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.transport = transport
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_failed = False
        self._listener: asyncio.Task[None] | None = None

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

    def start(self) -> asyncio.Task[None] | None:
        """Start the sender task and its LISTEN connection (none without a transport)."""
        if self.transport is None:
            return None
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._listener = loop.create_task(self._listen(), name="outbox-listener")
        return loop.create_task(self.run(), name="outbox-sender")

    async def stop(self, task: asyncio.Task[None] | None) -> None:
        """Let a delivery in progress finish (bounded), then end the task and the listener."""
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Deliver rounds until stopped; a round that fails (PostgreSQL down) is retried."""
        failed_rounds = 0
        while not self._stopping:
            pause = self.settings.mail_poll_s
            try:
                claimed = await self.deliver_due()
                failed_rounds = 0
            # The sender must outlive any failure of a round (PostgreSQL restarting, a
            # connection reset): the rows stay in the outbox and a later round retries,
            # the pause doubling (up to ROUND_RETRY_MAX_S) while the failures go on.
            except Exception as exc:
                failed_rounds += 1
                pause = min(max(ROUND_RETRY_MAX_S, pause), pause * 2 ** min(failed_rounds - 1, 10))
                logger.warning("mail sender round failed ({}); retrying in {:.1f} s", type(exc).__name__, pause)
                claimed = 0
            if claimed >= BATCH_SIZE or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()

    async def deliver_due(self) -> int:
        """One round: claim due rows under a fresh lease token and deliver each; declare the
        rows past OUTBOX_MAX_AGE_S dead; how many were claimed."""
        if self.transport is None:
            return 0
        conn = self.db.connection
        lease_token = uuid.uuid4()
        rows = await queries.claim_due(
            conn=conn,
            limit=BATCH_SIZE,
            lease_s=lease_s(self.settings),
            lease_token=lease_token,
            max_age_s=self.settings.outbox_max_age_s,
        )
        for row in rows:
            if self._stopping:
                break  # the rest return to the queue when their claim lease ends
            await self._deliver(conn, row, lease_token)
        for kind in await queries.mark_dead(conn=conn, max_age_s=self.settings.outbox_max_age_s, limit=DEAD_PER_ROUND):
            metrics.OUTBOX_DEAD.labels(kind).inc()
            logger.error(
                "outbox row ({}) given up after {} s undelivered: a dead letter", kind, self.settings.outbox_max_age_s
            )
        counts = await queries.counts(conn=conn, channel=mail.CHANNEL)
        metrics.OUTBOX_ROWS.labels("pending").set(counts.pending)
        metrics.OUTBOX_ROWS.labels("dead").set(counts.dead)
        return len(rows)

    async def _deliver(self, conn: Any, row: Claimed, lease_token: uuid.UUID) -> None:
        assert self.transport is not None
        renewed = await queries.renew(conn=conn, row_id=row.id, lease_token=lease_token, lease_s=lease_s(self.settings))
        if renewed is None:
            logger.info("mail {} ({}) is another sender's now; skipped", row.id, row.kind)
            return
        if not renewed.live:
            await queries.discard(conn=conn, row_id=row.id, lease_token=lease_token)
            metrics.MAILS_DISCARDED.labels(row.kind).inc()
            logger.info("mail {} ({}) discarded: the link it carries is no longer valid", row.id, row.kind)
            return
        body = self._body(row)
        if body is None:
            await self._failed(
                conn,
                row,
                lease_token,
                attempts=renewed.attempts,
                error="no configured key opens the sealed body (MFA_ENCRYPTION_KEY changed?)",
            )
            return
        mail_out = OutgoingMail(id=row.id, recipient=row.recipient, subject=row.subject, body=body, kind=row.kind)
        try:
            await asyncio.wait_for(self.transport.send(mail_out), self.settings.mail_send_timeout_s)
        # Whatever the transport raised (refused connection, TLS failure, an SMTP error
        # reply, a timeout), the mail stays queued and is tried again later.
        except Exception as exc:
            await self._failed(conn, row, lease_token, attempts=renewed.attempts, error=f"{type(exc).__name__}: {exc}")
            return
        if not await queries.mark_sent(conn=conn, row_id=row.id, lease_token=lease_token):
            # Only if this process stalled past its lease mid-delivery: never on a slow server.
            logger.warning("mail {} ({}) was delivered after this sender's lease ran out", row.id, row.kind)
        self._last_failed = False
        metrics.MAILS_SENT.labels(row.kind).inc()
        logger.info("mail {} ({}) delivered after {} attempt(s)", row.id, row.kind, renewed.attempts)

    def _body(self, row: Claimed) -> str | None:
        if row.payload_sealed is None:
            return row.body  # queued before bodies were sealed
        opened = mail.open_body(self.settings, recipient=row.recipient, sealed=row.payload_sealed)
        return opened.plaintext.decode() if opened is not None else None

    async def _failed(self, conn: Any, row: Claimed, lease_token: uuid.UUID, *, attempts: int, error: str) -> None:
        retry_in = backoff_s(attempts=attempts, max_s=self.settings.mail_retry_max_s)
        await queries.mark_failed(
            conn=conn, row_id=row.id, lease_token=lease_token, error=error[:500], retry_in_s=retry_in
        )
        self._last_failed = True
        metrics.MAIL_FAILURES.labels(row.kind).inc()
        logger.warning(
            "mail {} ({}) not delivered, attempt {}: {}; next attempt in {:.0f} s",
            row.id,
            row.kind,
            attempts,
            error,
            retry_in,
        )

    async def _listen(self) -> None:
        """Wake on every NOTIFY of a queued row; reopen the connection when it drops."""
        from manas360.db import connect

        pause = 1.0
        while True:
            conn = None
            try:
                conn = await connect(self.settings)
                await conn.add_listener(queries.CHANNEL, lambda *_: self.notify())
                pause = 1.0
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL down or restarting: the poll goes on meanwhile
                logger.debug("outbox LISTEN connection failed ({}); reopening in {:.0f} s", type(exc).__name__, pause)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(pause)
            pause = min(pause * 2, LISTEN_RETRY_MAX_S)
