"""Changing an account's address, with a confirmation by the new mailbox and a way back from
the old one (docs/auth.md, "Changing your email").

- Request (POST /me/email, step-up): 202 `{}` for any well-formed address other than the
  current one. A free address gets a confirmation link (a one-time account token: voided by
  every security event, like a reset link) and the old address a notice with a cancel link
  (256 bits, hashed, valid EMAIL_CHANGE_TTL_S + EMAIL_CHANGE_REVERT_S, voided by nothing). An
  address another account holds (or keeps reserved) gets a mail saying so and nothing else:
  the answer does not tell who uses the platform. At most 3 mails an hour go to one address.
  While a confirmed change can still be reverted, a new request is 409 EmailChangePending.
- Confirm (POST /auth/email-change/confirm, a session of the same account): the address
  changes and is verified; a security event (other sessions revoked, one-time links voided),
  both addresses told. The live-address unique index makes two accounts racing for one
  address end with one owner (the other gets 409 EmailTaken).
- Cancel (POST /auth/email-change/cancel, the link from the old address): before the
  confirm, the change is void; after it, within the revert window, the account goes back to
  the old address (kept reserved for it until then), every session is revoked, every one-time
  link voided, every factor added since the request removed (TOTP, recovery codes,
  passkeys: manas360.queries.accounts.lifecycle.REMOVED_SINCE_SQLS), a password set since
  the request made unusable, and a reset link mailed to the restored address: the owner's way
  back after a takeover.

Confirm and cancel both lock the user row before reading the change, so of a racing confirm
and cancel one goes first and the other sees what it did.
"""

from __future__ import annotations

from functools import partial

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from manas360.db import Database
from manas360.errors import EmailChangePending, EmailTaken, InvalidToken, ValidationError
from manas360.queries.accounts import account_tokens as token_queries
from manas360.queries.accounts import lifecycle as queries
from manas360.queries.accounts import users as user_queries
from manas360.queries.mail import outbox as outbox_queries
from manas360.security.jwt import VerifiedToken
from manas360.services.access.entitlements import forget_user
from manas360.services.accounts import users
from manas360.services.accounts.account_tokens import PASSWORD_RESET, hash_token, new_token
from manas360.services.accounts.users import User
from manas360.services.admin import audit
from manas360.services.auth import events, stepup
from manas360.services.auth.events import Event, Revocation
from manas360.services.auth.sessions import Client
from manas360.services.integration import webhooks
from manas360.services.mail import messages as mail
from manas360.settings import Settings
from manas360.store import Store

EMAIL_CHANGE = "email_change"
"""The account-token purpose of a confirm link."""
MAILS_PER_RECIPIENT_HOURLY = 3
MAX_TOKEN_CHARS = 512


async def request_change(
    *, db: Database, settings: Settings, principal: VerifiedToken, client: Client, new_email: str
) -> None:
    """POST /me/email: step-up, then mail the new address (or tell it it is taken) and the old one."""
    async with db.transaction() as conn:
        account, now = await stepup.lock_caller(conn, settings=settings, principal=principal, source=client.source)
        if new_email == account.email:
            raise ValidationError({"new_email": "is already the address of this account"})
        if await queries.revert_window_open(conn=conn, user_id=account.user_id):
            raise EmailChangePending()
        taken = await queries.address_taken(conn=conn, email=new_email, user_id=account.user_id)
        may_mail = await queries.mails_to_recipient_this_hour(conn=conn, email=new_email) < MAILS_PER_RECIPIENT_HOURLY
        await audit.record(
            conn,
            action=audit.EMAIL_CHANGE_REQUESTED,
            actor_id=account.user_id,
            target_user_id=account.user_id,
            ip=client.ip,
            after={"new_email": new_email, "mailed": may_mail},
        )
        if not may_mail:
            return
        if taken:
            # Addressed to whoever holds the address; not linked to the requesting account.
            await mail.queue(
                conn, settings=settings, recipient=new_email, draft=mail.email_taken_notice(settings), user_id=None
            )
            return
        # A newer request supersedes an unconfirmed one: its link dies, its mail if still waiting.
        await queries.supersede_pending(conn=conn, user_id=account.user_id)
        dropped = await token_queries.drop_beyond(conn=conn, user_id=account.user_id, purpose=EMAIL_CHANGE, keep=0)
        await outbox_queries.discard_for_tokens(conn=conn, token_ids=dropped)
        confirm, confirm_hash = new_token()
        cancel, cancel_hash = new_token()
        token_id = await token_queries.insert_token(
            conn=conn,
            token_hash=confirm_hash,
            user_id=account.user_id,
            purpose=EMAIL_CHANGE,
            ttl_s=settings.email_change_ttl_s,
        )
        await queries.insert_email_change(
            conn=conn,
            user_id=account.user_id,
            old_email=account.email,
            new_email=new_email,
            password_version=account.password_version,
            confirm_hash=confirm_hash,
            cancel_hash=cancel_hash,
            ttl_s=settings.email_change_ttl_s,
            revert_s=settings.email_change_revert_s,
        )
        await mail.queue(
            conn,
            settings=settings,
            recipient=new_email,
            draft=mail.email_change_confirm(settings, token=confirm),
            user_id=account.user_id,
            token_id=token_id,
        )
        notice = mail.email_change_notice(
            settings, token=cancel, new_email=new_email, when=now, ip=client.ip, user_agent=client.user_agent
        )
        # Carries a link no security event voids: not marked as carrying a token.
        await mail.queue(conn, settings=settings, recipient=account.email, draft=notice, user_id=account.user_id)


async def confirm_change(
    *, db: Database, settings: Settings, store: Store, principal: VerifiedToken, client: Client, token: str
) -> User:
    """POST /auth/email-change/confirm: the new address, verified; other sessions revoked."""
    token_hash = hash_token(token)
    try:
        async with db.transaction() as conn:
            account = await users.lock_credentials(
                conn, user_id=principal.user_id, source=client.source, known_source_s=settings.lockout_known_source_s
            )
            if account is None:
                raise InvalidToken()
            owner = await token_queries.find_live(conn=conn, token_hash=token_hash, purpose=EMAIL_CHANGE)
            if owner != account.user_id:  # unknown, used, voided, expired, or another account's
                raise InvalidToken()
            change = await queries.find_confirm(conn=conn, confirm_hash=token_hash)
            if change is None:
                raise InvalidToken()
            for address in sorted({account.email, change.new_email}):  # one order: no deadlock
                await queries.lock_address(conn=conn, email=address)
            if await queries.address_taken(conn=conn, email=change.new_email, user_id=account.user_id):
                raise EmailTaken()
            await token_queries.consume(conn=conn, token_hash=token_hash, purpose=EMAIL_CHANGE)
            await queries.mark_confirmed(conn=conn, change_id=change.id, revert_s=settings.email_change_revert_s)
            await queries.set_email(conn=conn, user_id=account.user_id, email=change.new_email)
            revoked = await events.record(
                conn,
                settings=settings,
                user_id=account.user_id,
                event=Event.EMAIL_CHANGED,
                client=client,
                email=account.email,
                keep_session=principal.session_id,
            )
            for address in (account.email, change.new_email):
                await events.notify(
                    conn,
                    settings=settings,
                    user_id=account.user_id,
                    email=address,
                    notice="email_changed",
                    client=client,
                    when=revoked.now,
                )
            await audit.record(
                conn,
                action=audit.EMAIL_CHANGED,
                actor_id=account.user_id,
                target_user_id=account.user_id,
                ip=client.ip,
                before={"email": account.email},
                after={"email": change.new_email},
            )
            await webhooks.user_changed(conn, settings=settings, user_id=account.user_id, event=webhooks.USER_UPDATED)
            user = await users.get_held_user(conn, user_id=account.user_id)
    except IntegrityError:  # another account took the address first (the live-email unique index)
        raise EmailTaken() from None
    await events.publish(settings=settings, store=store, revoked=revoked)
    return user


async def cancel_change(*, db: Database, settings: Settings, store: Store, client: Client, token: str) -> None:
    """POST /auth/email-change/cancel: void a pending change, or revert a confirmed one."""
    token_hash = hash_token(token)
    found = await queries.find_cancel(conn=db.connection, cancel_hash=token_hash)
    if found is None:
        raise InvalidToken()
    revoked: Revocation | None = None
    async with db.transaction() as conn:
        if not await user_queries.lock_user_row(conn=conn, user_id=found.user_id):
            raise InvalidToken()
        change = await queries.find_cancel(conn=conn, cancel_hash=token_hash)  # as it is now, under the lock
        if change is None:
            raise InvalidToken()
        if not change.confirmed:
            await queries.cancel_change(conn=conn, change_id=change.id)
            await token_queries.consume(conn=conn, token_hash=change.confirm_hash, purpose=EMAIL_CHANGE)
            await audit.record(
                conn,
                action=audit.EMAIL_CHANGE_CANCELLED,
                actor_id=None,
                target_user_id=change.user_id,
                ip=client.ip,
                after={"change_id": change.id},
            )
        else:
            revoked = await _revert(conn, settings=settings, change=change, client=client)
    if revoked is not None:
        await forget_user(store=store, user_id=revoked.user_id)
        await events.publish(settings=settings, store=store, revoked=revoked)


async def _revert(conn: BaseDBAsyncClient, *, settings: Settings, change: queries.Cancel, client: Client) -> Revocation:
    """The account back at the old address, as it was before the request (module docstring)."""
    if not await queries.mark_reverted(conn=conn, change_id=change.id):
        raise InvalidToken()
    await queries.set_email(conn=conn, user_id=change.user_id, email=change.old_email)
    removed = await queries.remove_factors_since(conn=conn, user_id=change.user_id, since=change.requested_at)
    password_disabled = await queries.disable_password_if_changed(
        conn=conn, user_id=change.user_id, version=change.password_version
    )
    await queries.supersede_pending(conn=conn, user_id=change.user_id)
    revoked = await events.record(
        conn,
        settings=settings,
        user_id=change.user_id,
        event=Event.EMAIL_CHANGE_REVERTED,
        client=client,
        email=change.old_email,
    )
    for address in (change.old_email, change.new_email):
        await events.notify(
            conn,
            settings=settings,
            user_id=change.user_id,
            email=address,
            notice="email_change_reverted",
            client=client,
            when=revoked.now,
        )
    # A reset link to the restored address, made after the event's epoch (so it lives).
    reset, reset_hash = new_token()
    token_id = await token_queries.insert_token(
        conn=conn,
        token_hash=reset_hash,
        user_id=change.user_id,
        purpose=PASSWORD_RESET,
        ttl_s=settings.password_reset_ttl_s,
    )
    await mail.queue(
        conn,
        settings=settings,
        recipient=change.old_email,
        draft=partial(mail.password_reset, settings)(token=reset),
        user_id=change.user_id,
        token_id=token_id,
    )
    await audit.record(
        conn,
        action=audit.EMAIL_CHANGE_REVERTED,
        actor_id=None,
        target_user_id=change.user_id,
        ip=client.ip,
        before={"email": change.new_email},
        after={
            "email": change.old_email,
            "factors_removed": removed,
            "password_disabled": password_disabled,
            "sessions_revoked": len(revoked.session_ids),
        },
    )
    await webhooks.user_changed(conn, settings=settings, user_id=change.user_id, event=webhooks.USER_UPDATED)
    return revoked
