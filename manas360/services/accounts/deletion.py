"""Deleting an account: scheduled, cancellable for ACCOUNT_DELETION_GRACE_S, then purged
(manas360.services.ops.purge; docs/auth.md, "Your data").

Scheduling (DELETE /me with step-up, or an administrator's PUT status `pending_deletion`) is
a security event: every session and access token dies, every one-time link is voided, and
the account answers 403 AccountPendingDeletion to a login, a refresh, a reset confirm and
every authenticated request (the status rides in the cached context the guard reads: no SQL).
The owner gets a mail with a cancel link (256 bits, stored as its SHA-256 on the account,
voided by no event); an administrator's deletion mails no link and only an administrator
cancels it. The cancel is a way into the account like a login: the link, the password (and
with MFA on a code), through the one gate, counted by the lockout; the status before the
deletion comes back and the caller gets a new session.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.clock import Clock, db_now
from manas360.db import Database
from manas360.errors import InvalidToken, NotFound
from manas360.queries.accounts import lifecycle as queries
from manas360.security.jwt import AccessTokenCodec, VerifiedToken
from manas360.security.secretbox import SecretBox
from manas360.services.access.entitlements import forget_user
from manas360.services.accounts import users
from manas360.services.accounts.account_tokens import hash_token, new_token
from manas360.services.admin import audit
from manas360.services.auth import codes, events, gate, password_check, stepup
from manas360.services.auth.events import Event, Revocation
from manas360.services.auth.gate import Flow
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import TokenPair
from manas360.services.integration import webhooks
from manas360.services.mail import messages as mail
from manas360.settings import Settings
from manas360.store import Store

MAX_TOKEN_CHARS = 512


async def request_deletion(
    *, db: Database, settings: Settings, store: Store, principal: VerifiedToken, client: Client
) -> datetime:
    """DELETE /me: step-up, then schedule; when the account will be erased."""
    async with db.transaction() as conn:
        account = (await stepup.lock_caller(conn, settings=settings, principal=principal, source=client.source)).account
        token, token_hash = new_token()
        deletion_at, revoked = await schedule(
            conn,
            settings=settings,
            user_id=account.user_id,
            email=account.email,
            actor_id=account.user_id,
            client=client,
            cancel=(token, token_hash),
        )
    await after_schedule(settings=settings, store=store, user_id=principal.user_id, revoked=revoked)
    return deletion_at


async def schedule(
    conn: BaseDBAsyncClient,
    *,
    settings: Settings,
    user_id: str,
    email: str,
    actor_id: str | None,
    client: Client,
    cancel: tuple[str, str] | None,
) -> tuple[datetime, Revocation]:
    """In the caller's transaction, user row locked: pending_deletion, the security event,
    the owner's mail (with the cancel link when `cancel` = (token, hash) is given), the audit
    entry and the `user.updated` webhook. The caller runs `after_schedule` after the commit."""
    deletion_at = await queries.schedule_deletion(
        conn=conn,
        user_id=user_id,
        grace_s=settings.account_deletion_grace_s,
        cancel_hash=cancel[1] if cancel is not None else None,
    )
    if deletion_at is None:  # gone, or already pending (callers check the status under the lock)
        raise NotFound()
    revoked = await events.record(
        conn, settings=settings, user_id=user_id, event=Event.DELETION_SCHEDULED, client=client, email=email
    )
    # Queued after the event (which discards pending mails that carry voided links): this mail
    # carries a link no event voids, so it is not marked as carrying one.
    draft = mail.deletion_scheduled(
        settings,
        token=cancel[0] if cancel is not None else None,
        deletion_at=deletion_at,
        when=revoked.now,
        ip=client.ip,
        user_agent=client.user_agent,
    )
    await mail.queue(conn, settings=settings, recipient=email, draft=draft, user_id=user_id)
    await audit.record(
        conn,
        action=audit.DELETION_SCHEDULED,
        actor_id=actor_id,
        target_user_id=user_id,
        ip=client.ip,
        after={"deletion_at": deletion_at.isoformat(), "by_owner": cancel is not None},
    )
    await webhooks.user_changed(conn, settings=settings, user_id=user_id, event=webhooks.USER_UPDATED)
    return deletion_at, revoked


async def after_schedule(*, settings: Settings, store: Store, user_id: str, revoked: Revocation | None) -> None:
    """After the commit: the cached context goes (the next request reads `pending_deletion`),
    and Redis learns of the revocations."""
    await forget_user(store=store, user_id=user_id)
    if revoked is not None:
        await events.publish(settings=settings, store=store, revoked=revoked)


async def cancel_by_owner(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    box: SecretBox,
    token: str,
    password: str,
    code: str | None,
    client: Client,
) -> TokenPair:
    """POST /auth/account-deletion/cancel: the link, the password (counted), the gate; the
    status before comes back and the caller gets a new session."""
    token_hash = hash_token(token)
    user_id = await queries.find_deletion_cancel(conn=db.connection, cancel_hash=token_hash)
    if user_id is None:
        raise InvalidToken()
    account = await users.get_credentials(
        conn=db.connection, user_id=user_id, source=client.source, known_source_s=settings.lockout_known_source_s
    )
    if account is None:
        raise InvalidToken()
    async with (
        password_check.checked_password(
            db=db,
            settings=settings,
            store=store,
            email=account.email,
            account=account,
            password=password,
            client=client,
            flow=Flow.DELETION_CANCEL,
        ) as checked,
        codes.optional_code(
            db=db,
            settings=settings,
            store=store,
            box=box,
            clock=clock,
            account=checked,
            code=code if checked.mfa_enabled else None,
            client=client,
            flow=Flow.DELETION_CANCEL,
        ) as match,
        db.transaction() as conn,
    ):
        current = await users.lock_credentials(
            conn, user_id=user_id, source=client.source, known_source_s=settings.lockout_known_source_s
        )
        if current is None or current.password_version != checked.password_version:
            raise InvalidToken()
        restored = await queries.cancel_deletion(conn=conn, user_id=user_id, cancel_hash=token_hash)
        if restored is None:  # purged, cancelled or past its grace meanwhile
            raise InvalidToken()
        proof = gate.PASSWORD_AND_CODE if match is not None else gate.PASSWORD
        admitted = (
            await gate.decide(
                settings=settings,
                store=store,
                account=current._replace(status=restored),
                flow=Flow.DELETION_CANCEL,
                proof=proof,
                client=client,
            )
        ).enforce()  # a refusal rolls the cancel back: nothing changes
        if match is not None:
            await codes.spend(conn, user_id=user_id, match=match)
        admission = await gate.admit(
            conn,
            settings=settings,
            user_id=user_id,
            client=client,
            flow=Flow.DELETION_CANCEL,
            proof=admitted,
            action=audit.DELETION_CANCELLED,
            details={"status": restored},
        )
        await events.notify(
            conn,
            settings=settings,
            user_id=user_id,
            email=current.email,
            notice="deletion_cancelled",
            client=client,
            when=await db_now(conn),
        )
        await webhooks.user_changed(conn, settings=settings, user_id=user_id, event=webhooks.USER_UPDATED)
    await forget_user(store=store, user_id=user_id)
    return admission.issue(settings=settings, codec=codec, clock=clock)
