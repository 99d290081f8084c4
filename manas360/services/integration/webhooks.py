"""Webhooks: signed notifications of changes to users and sessions, for the platform's other
services (Standard Webhooks; docs/integration.md, "Webhooks").

An event is written to the outbox in the transaction of the change it reports (it commits or
rolls back with it), sealed at rest like a mail, and delivered after the commit by the webhook
sender of some worker (manas360.services.mail.outbox): at least once, retried with backoff,
each user's events one at a time in the order they committed, each numbered (`data.seq`) at
its first attempt. A request never waits for a receiver. An event undelivered after
WEBHOOK_MAX_AGE_S is a dead letter (audited, counted, shown in /health) and the user's next
event goes out.

Each attempt is signed afresh: `webhook-id` (the same on every attempt: the receiver's key
for deduplication), `webhook-timestamp` (now), `webhook-signature` (`v1,<base64>` by each
secret of WEBHOOK_SECRET, space-separated). Redirects are not followed: a 3xx is a failure.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import orjson
from standardwebhooks.webhooks import Webhook
from tortoise.backends.base.client import BaseDBAsyncClient

from manas360 import __version__, metrics
from manas360.clock import db_now, iso
from manas360.queries.mail import outbox as outbox_queries
from manas360.queries.mail.outbox import Claimed, Dead
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.mail import messages as mail
from manas360.settings import Settings

CHANNEL = "webhook"
UserEvent = Literal["user.created", "user.updated"]
USER_CREATED: UserEvent = "user.created"
USER_UPDATED: UserEvent = "user.updated"
USER_DELETED = "user.deleted"
"""Queued by the purge when an account's erasure commits: `data` holds only `user_id`."""
SESSION_REVOKED = "session.revoked"
DEAD_LETTER = "webhook.dead_letter"
"""The audit action of an event given up after WEBHOOK_MAX_AGE_S."""


def enabled(settings: Settings) -> bool:
    """Whether events are recorded at all (WEBHOOK_URL set)."""
    return bool(settings.webhook_url)


async def user_changed(conn: BaseDBAsyncClient, *, settings: Settings, user_id: str, event: UserEvent) -> None:
    """Queue `user.created` / `user.updated` with the user's full state as this transaction
    sees it (after the change). Call it once the change is written."""
    if not enabled(settings):
        return
    user = await users.get_held_user(conn, user_id=user_id)
    await _queue(conn, settings=settings, user_id=user_id, event=event, data={"user": user.as_dict()})


async def sessions_revoked(
    conn: BaseDBAsyncClient, *, settings: Settings, user_id: str, session_ids: list[str] | None, reason: str
) -> None:
    """Queue `session.revoked`: these sessions, or (None) every session and access token the
    user had."""
    if not enabled(settings):
        return
    await _queue(
        conn,
        settings=settings,
        user_id=user_id,
        event=SESSION_REVOKED,
        data={"session_ids": session_ids if session_ids is not None else "all", "reason": reason},
    )


async def _queue(
    conn: BaseDBAsyncClient, *, settings: Settings, user_id: str, event: str, data: dict[str, Any]
) -> None:
    message_id = f"msg_{uuid.uuid4().hex}"
    body = orjson.dumps(
        {"type": event, "timestamp": iso(await db_now(conn)), "data": {"user_id": user_id, **data}}
    ).decode()
    await outbox_queries.insert(
        conn=conn,
        channel=CHANNEL,
        recipient=message_id,
        subject=event,
        payload_sealed=mail.seal(settings, recipient=message_id, body=body),
        kind=event,
        user_id=user_id,
        token_id=None,
    )


class WebhookRefused(Exception):
    """The receiver did not answer 2xx."""


class WebhookCourier:
    """Delivers webhook rows to WEBHOOK_URL over HTTP(S)."""

    channel = CHANNEL
    name = "http"
    in_order = True
    sent, failures, rows = metrics.WEBHOOKS_SENT, metrics.WEBHOOK_FAILURES, metrics.WEBHOOK_ROWS

    def __init__(self, settings: Settings) -> None:
        self.url = settings.webhook_url
        self.max_age_s = settings.webhook_max_age_s
        self.send_timeout_s = settings.webhook_timeout_s
        self._signers = [Webhook(secret) for secret in settings.webhook_secrets]
        self._client: httpx.AsyncClient | None = None

    def signed_headers(self, message_id: str, payload: bytes, *, at: datetime) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt at `at`."""
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": " ".join(signer.sign(message_id, at, payload) for signer in self._signers),
            "content-type": "application/json",
            "user-agent": f"MANAS360-Webhooks/{__version__}",
        }

    async def deliver(self, row: Claimed, payload: bytes, *, seq: int | None) -> None:
        event = orjson.loads(payload)
        event["data"]["seq"] = seq
        body = orjson.dumps(event)
        if self._client is None:
            # No redirects: a receiver that moved must be reconfigured, not followed.
            self._client = httpx.AsyncClient(timeout=self.send_timeout_s, follow_redirects=False)
        headers = self.signed_headers(row.recipient, body, at=datetime.now(UTC))
        response = await self._client.post(self.url, content=body, headers=headers)
        if not 200 <= response.status_code < 300:
            raise WebhookRefused(f"the receiver answered {response.status_code}")

    async def gave_up(self, conn: Any, dead: Dead) -> None:
        await audit.record(
            conn,
            action=DEAD_LETTER,
            actor_id=None,
            target_user_id=dead.user_id,
            after={"event": dead.kind, "outbox_id": dead.id},
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def build_webhook_courier(settings: Settings) -> WebhookCourier | None:
    return WebhookCourier(settings) if enabled(settings) else None
