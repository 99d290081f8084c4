"""The outbox sender: delivers queued rows of one channel (mail, or webhooks) exactly as far
as it owns them, retrying with backoff while the receiver fails.

Every worker runs one per configured channel (started and stopped with the app), each with
its own courier (manas360.services.mail.outbox.MailCourier, or the webhook one in
manas360.services.integration.webhooks): a slow webhook receiver never delays mail. A round claims up to BATCH_SIZE
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

A channel delivered in order (webhooks) claims only the oldest pending row of each user, so a
user's events go out one at a time, each after the one before is delivered or dead; each gets
its user's next number (`seq`) at its first attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from typing import Any, Protocol

from loguru import logger
from prometheus_client import Counter, Gauge

from manas360 import metrics
from manas360.db import Database
from manas360.queries.mail import outbox as queries
from manas360.queries.mail.outbox import Claimed, Dead
from manas360.services.mail import messages as mail
from manas360.settings import Settings
from manas360.smtp import ConsoleTransport, MailTransport, OutgoingMail, SmtpTransport

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


def lease_s(send_timeout_s: float) -> float:
    """How long a sender owns a row it is about to deliver: beyond any delivery."""
    return 2 * send_timeout_s + 10


class Courier(Protocol):
    """How the rows of one channel are delivered."""

    channel: str
    name: str
    """What /health shows for a working courier (`ok` aside): e.g. `console`."""
    in_order: bool
    """Deliver each user's rows one at a time, oldest first, each numbered (`seq`)."""
    max_age_s: int
    send_timeout_s: float
    sent: Counter
    """Deliveries by kind."""
    failures: Counter
    """Failed attempts by kind."""
    rows: Gauge
    """This channel's pending rows and dead letters, as the sender last counted them."""

    async def deliver(self, row: Claimed, payload: bytes, *, seq: int | None) -> None:
        """Deliver or raise (any exception is a failed attempt, retried later)."""

    async def gave_up(self, conn: Any, dead: Dead) -> None:
        """A row became a dead letter (already counted and logged)."""

    async def close(self) -> None:
        """Release what the courier holds (connections)."""


class MailCourier:
    """Mail through a MailTransport (SMTP or the console)."""

    channel = mail.CHANNEL
    in_order = False
    sent, failures, rows = metrics.MAILS_SENT, metrics.MAIL_FAILURES, metrics.OUTBOX_ROWS

    def __init__(self, settings: Settings, transport: MailTransport) -> None:
        self.transport = transport
        self.name = transport.name
        self.max_age_s = settings.outbox_max_age_s
        self.send_timeout_s = settings.mail_send_timeout_s

    async def deliver(self, row: Claimed, payload: bytes, *, seq: int | None) -> None:
        await self.transport.send(
            OutgoingMail(id=row.id, recipient=row.recipient, subject=row.subject, body=payload.decode(), kind=row.kind)
        )

    async def gave_up(self, conn: Any, dead: Dead) -> None:
        return None

    async def close(self) -> None:
        return None


def build_mail_courier(settings: Settings) -> MailCourier | None:
    transport = build_transport(settings)
    return MailCourier(settings, transport) if transport is not None else None


class Outbox:
    """One worker's sender for one channel; building it does no I/O."""

    def __init__(self, *, settings: Settings, courier: Courier | None, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.courier = courier
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_failed = False
        self._listener: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        """What /health shows: unconfigured, console, ok, or failing (this worker's last attempt)."""
        if self.courier is None:
            return UNCONFIGURED
        if self.courier.name == CONSOLE:
            return CONSOLE
        return FAILING if self._last_failed else OK

    def notify(self) -> None:
        """Look for due mail now instead of at the next poll."""
        self._wake.set()

    def start(self) -> asyncio.Task[None] | None:
        """Start the sender task and its LISTEN connection (none without a courier)."""
        if self.courier is None:
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
        if self.courier is not None:
            await self.courier.close()

    async def run(self) -> None:
        """Deliver rounds until stopped; a round that fails (PostgreSQL down) is retried."""
        assert self.courier is not None  # started only with one
        channel = self.courier.channel
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
                logger.warning("{} sender round failed ({}); retrying in {:.1f} s", channel, type(exc).__name__, pause)
                claimed = 0
            if claimed >= BATCH_SIZE or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()

    async def deliver_due(self) -> int:
        """One round: claim due rows under a fresh lease token and deliver each; declare the
        rows past the channel's max age dead; how many were claimed."""
        courier = self.courier
        if courier is None:
            return 0
        conn = self.db.connection
        lease_token = uuid.uuid4()
        rows = await queries.claim_due(
            conn=conn,
            channel=courier.channel,
            limit=BATCH_SIZE,
            lease_s=lease_s(courier.send_timeout_s),
            lease_token=lease_token,
            max_age_s=courier.max_age_s,
            in_order=courier.in_order,
        )
        for row in rows:
            if self._stopping:
                break  # the rest return to the queue when their claim lease ends
            await self._deliver(conn, courier, row, lease_token)
        for dead in await queries.mark_dead(
            conn=conn, channel=courier.channel, max_age_s=courier.max_age_s, limit=DEAD_PER_ROUND
        ):
            metrics.OUTBOX_DEAD.labels(dead.kind).inc()
            logger.error(
                "outbox row {} ({}) given up after {} s undelivered: a dead letter",
                dead.id,
                dead.kind,
                courier.max_age_s,
            )
            await courier.gave_up(conn, dead)
        counts = await queries.counts(conn=conn, channel=courier.channel)
        courier.rows.labels("pending").set(counts.pending)
        courier.rows.labels("dead").set(counts.dead)
        return len(rows)

    async def _deliver(self, conn: Any, courier: Courier, row: Claimed, lease_token: uuid.UUID) -> None:
        renewed = await queries.renew(
            conn=conn,
            row_id=row.id,
            lease_token=lease_token,
            lease_s=lease_s(courier.send_timeout_s),
            numbered=courier.in_order,
        )
        if renewed is None:
            logger.info("outbox row {} ({}) is another sender's now; skipped", row.id, row.kind)
            return
        if not renewed.live:
            await queries.discard(conn=conn, row_id=row.id, lease_token=lease_token)
            metrics.MAILS_DISCARDED.labels(row.kind).inc()
            logger.info("mail {} ({}) discarded: the link it carries is no longer valid", row.id, row.kind)
            return
        payload = self._payload(row)
        if payload is None:
            await self._failed(
                conn,
                courier,
                row,
                lease_token,
                attempts=renewed.attempts,
                error="no configured key opens the sealed payload (MFA_ENCRYPTION_KEY changed?)",
            )
            return
        try:
            await asyncio.wait_for(courier.deliver(row, payload, seq=renewed.seq), courier.send_timeout_s)
        # Whatever the courier raised (refused connection, TLS failure, an error reply, a
        # timeout), the row stays queued and is tried again later.
        except Exception as exc:
            await self._failed(
                conn, courier, row, lease_token, attempts=renewed.attempts, error=f"{type(exc).__name__}: {exc}"
            )
            return
        if not await queries.mark_sent(conn=conn, row_id=row.id, lease_token=lease_token):
            # Only if this process stalled past its lease mid-delivery: never on a slow receiver.
            logger.warning("outbox row {} ({}) was delivered after this sender's lease ran out", row.id, row.kind)
        self._last_failed = False
        courier.sent.labels(row.kind).inc()
        logger.info("outbox row {} ({}) delivered after {} attempt(s)", row.id, row.kind, renewed.attempts)

    def _payload(self, row: Claimed) -> bytes | None:
        if row.payload_sealed is None:
            return row.body.encode() if row.body is not None else None  # queued before bodies were sealed
        opened = mail.open_body(self.settings, recipient=row.recipient, sealed=row.payload_sealed)
        return opened.plaintext if opened is not None else None

    async def _failed(
        self, conn: Any, courier: Courier, row: Claimed, lease_token: uuid.UUID, *, attempts: int, error: str
    ) -> None:
        retry_in = backoff_s(attempts=attempts, max_s=self.settings.mail_retry_max_s)
        await queries.mark_failed(
            conn=conn, row_id=row.id, lease_token=lease_token, error=error[:500], retry_in_s=retry_in
        )
        self._last_failed = True
        courier.failures.labels(row.kind).inc()
        logger.warning(
            "outbox row {} ({}) not delivered, attempt {}: {}; next attempt in {:.0f} s",
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
