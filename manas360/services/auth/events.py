"""Security events: one place decides what each one kills, and whom it tells.

Every listed event (a password change or reset, logout-all, an administrator's revoke,
disable or MFA reset, MFA on or off, recovery codes regenerated, the first proof of the
mailbox, a passkey removed; email change as it arrives) calls `record` in the transaction
of the change, with the user row locked. In that same transaction it:

- moves the account's credential epoch: every one-time token created before it (password
  reset, email verification, `mfa_token`) is dead, whoever holds it, and a mail still
  waiting to carry one is discarded;
- revokes sessions: all of them, or all but the session that made the change (MFA on or
  off, recovery codes, a passkey removed): `keep`. "All" also moves the access-token epoch, so every access
  token issued until now dies at once; "all but one" revokes the others by session id;
- queues the owner's notice (to the address the account has now, before any change of it);
- queues the `session.revoked` webhook event (manas360.services.integration.webhooks).

After the commit the flow calls `publish`: Redis learns of the revocations (never before
PostgreSQL has them), and a flush cannot resurrect them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.after_commit import run_to_completion
from manas360.clock import db_now, epoch_ms, to_ms
from manas360.queries.accounts import users as user_queries
from manas360.queries.mail import outbox as outbox_queries
from manas360.services.auth import revocation, sessions
from manas360.services.auth.sessions import Client
from manas360.services.integration import webhooks
from manas360.services.mail import messages as mail
from manas360.settings import Settings
from manas360.store import Store


class Event(StrEnum):
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    LOGOUT_ALL = "logout_all"
    ADMIN_REVOKE = "admin"
    DISABLED = "disabled"
    ADMIN_MFA_RESET = "admin_mfa_reset"
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    PASSKEY_REMOVED = "passkey_removed"
    DELETION_SCHEDULED = "deletion_scheduled"
    """By the owner or an administrator: every session goes; the owner's mail is the caller's (it
    carries the cancel link, which no event voids)."""
    EMAIL_CHANGED = "email_changed"
    EMAIL_CHANGE_REVERTED = "email_change_reverted"
    MAILBOX_PROVEN = "mailbox_proven"
    """The first proof of the address: factors and sessions made before it go (pre-hijacking)."""


KEEPS_THE_CALLER = frozenset(
    {
        Event.MFA_ENABLED,
        Event.MFA_DISABLED,
        Event.RECOVERY_CODES_REGENERATED,
        Event.PASSKEY_REMOVED,
        Event.EMAIL_CHANGED,
    }
)
"""Events made from a session that stays: every other session is revoked, this one is not."""
NOTIFIED = frozenset(
    {
        Event.PASSWORD_CHANGED,
        Event.PASSWORD_RESET,
        Event.MFA_ENABLED,
        Event.MFA_DISABLED,
        Event.RECOVERY_CODES_REGENERATED,
        Event.ADMIN_MFA_RESET,
        Event.PASSKEY_REMOVED,
    }
)
"""Events the owner is told of by mail (manas360.services.mail.messages.NOTICES)."""


@dataclass(frozen=True, slots=True)
class Revocation:
    """What an event revoked, for Redis after the commit."""

    user_id: str
    now: datetime
    session_ids: list[str] = field(default_factory=list)
    epoch_ms: int = 0
    """The access-token epoch, when every access token died (0: only `session_ids`)."""


async def record(
    conn: BaseDBAsyncClient,
    *,
    settings: Settings,
    user_id: str,
    event: Event,
    client: Client,
    email: str,
    keep_session: str | None = None,
) -> Revocation:
    """In the change's transaction, user row locked: void one-time tokens, revoke sessions
    (all, or all but `keep_session` for the events that keep the caller), queue the notice."""
    await user_queries.move_credential_epoch(conn=conn, user_id=user_id)
    await outbox_queries.discard_for_user(conn=conn, user_id=user_id)  # the links it voided are never sent
    now = await db_now(conn)
    keep = keep_session if event in KEEPS_THE_CALLER else None
    session_ids = await sessions.revoke_user_sessions(conn, user_id=user_id, reason=event.value, now=now, keep=keep)
    moved = 0 if keep else epoch_ms(await user_queries.move_token_epoch(conn=conn, user_id=user_id))
    if not keep or session_ids:  # "all" also kills every access token, even with no session open
        await webhooks.sessions_revoked(
            conn, settings=settings, user_id=user_id, session_ids=session_ids if keep else None, reason=event.value
        )
    if event in NOTIFIED:
        await notify(conn, settings=settings, user_id=user_id, email=email, notice=event.value, client=client, when=now)
    return Revocation(user_id=user_id, now=now, session_ids=session_ids, epoch_ms=moved)


async def notify(
    conn: BaseDBAsyncClient,
    *,
    settings: Settings,
    user_id: str,
    email: str,
    notice: str,
    client: Client,
    when: datetime,
) -> None:
    """Queue one security notice (a key of manas360.services.mail.messages.NOTICES) to the owner."""
    draft = mail.security_notice(settings, event=notice, when=when, ip=client.ip, user_agent=client.user_agent)
    await mail.queue(conn, settings=settings, recipient=email, draft=draft, user_id=user_id)


async def publish(*, settings: Settings, store: Store, revoked: Revocation) -> None:
    """Tell Redis what the committed event revoked (runs to completion if the client leaves)."""
    await run_to_completion(
        revocation.publish(
            store,
            settings=settings,
            user_id=revoked.user_id,
            now_ms=to_ms(revoked.now),
            epoch_ms=revoked.epoch_ms,
            session_ids=revoked.session_ids,
        )
    )
