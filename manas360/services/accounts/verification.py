"""Email verification: registration mails a single-use link, confirming it marks the
address verified; a new link can be asked for by a signed-in user or, with no session
(REQUIRE_VERIFIED_EMAIL leaves an unverified account none), by address.

The token and its mail commit in the transaction that creates the need for them (the new
account, the resend), so there is never a mail without a stored token, or a token whose
mail was lost. At most MAX_LIVE links are live per account (a newer one drops the oldest
beyond) and MAIL_PER_ACCOUNT_HOURLY verification mails go to an account per hour; a resend
by address answers the same, after the same work, for unknown, verified and capped ones.

The first proof of the mailbox ends any pre-hijacking: an account someone registered with
another person's address, and armed with a TOTP secret, passkeys or sessions before the owner proved
it, loses them when the owner verifies (the security event MAILBOX_PROVEN revokes every
session and voids every one-time link; the second factor and every passkey go). Verifying issues no session.
"""

from __future__ import annotations

from functools import partial

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.db import Database
from manas360.errors import InvalidToken
from manas360.queries.accounts import account_tokens as queries
from manas360.queries.auth import mfa as mfa_queries
from manas360.queries.auth import passkeys as passkey_queries
from manas360.queries.mail import outbox as outbox_queries
from manas360.services.accounts import users
from manas360.services.accounts.account_tokens import EMAIL_VERIFICATION, MAX_LIVE, hash_token, mail_link, new_token
from manas360.services.accounts.users import User
from manas360.services.admin import audit
from manas360.services.auth import events, sessions
from manas360.services.auth.events import Event, Revocation
from manas360.services.auth.principal import Principal
from manas360.services.auth.sessions import Client
from manas360.services.mail import messages as mail
from manas360.settings import Settings
from manas360.store import Store


async def send_link(conn: BaseDBAsyncClient, *, settings: Settings, user_id: str, email: str, ip: str) -> None:
    """In the caller's transaction (user row locked or just created): store a new token and
    queue its mail, unless the account had its hourly allowance of verification mails."""
    if (
        await queries.mails_this_hour(conn=conn, user_id=user_id, kind=mail.EMAIL_VERIFICATION)
        >= settings.mail_per_account_hourly
    ):
        await audit.record(
            conn,
            action=audit.EMAIL_VERIFICATION_SENT,
            actor_id=user_id,
            target_user_id=user_id,
            ip=ip,
            after={"mail_id": None, "reason": "hourly_allowance"},
        )
        return
    token, token_hash = new_token()
    dropped = await queries.drop_beyond(conn=conn, user_id=user_id, purpose=EMAIL_VERIFICATION, keep=MAX_LIVE - 1)
    await outbox_queries.discard_for_tokens(conn=conn, token_ids=dropped)
    token_id = await queries.insert_token(
        conn=conn, token_hash=token_hash, user_id=user_id, purpose=EMAIL_VERIFICATION, ttl_s=settings.email_verify_ttl_s
    )
    mail_id = await mail.queue(
        conn,
        settings=settings,
        recipient=email,
        draft=mail.email_verification(settings, token=token),
        user_id=user_id,
        token_id=token_id,
    )
    await audit.record(
        conn,
        action=audit.EMAIL_VERIFICATION_SENT,
        actor_id=user_id,
        target_user_id=user_id,
        ip=ip,
        after={"mail_id": mail_id, "dropped": len(dropped)},
    )


async def resend(*, db: Database, settings: Settings, principal: Principal, client: Client) -> None:
    """A new link for the caller, unless the address is already verified (then nothing)."""
    async with db.transaction() as conn:
        if not await sessions.lock_user(conn, user_id=principal.user_id):
            return
        user = await users.get_held_user(conn, user_id=principal.user_id)
        if user.email_verified:
            return
        await send_link(conn, settings=settings, user_id=user.id, email=user.email, ip=client.ip)


async def resend_to(*, db: Database, settings: Settings, email: str, client: Client) -> None:
    """A new link to an unverified, active account's address, with no session; the same work
    and answer for any address."""
    await mail_link(
        db=db,
        settings=settings,
        email=users.normalize_email(email),
        purpose=EMAIL_VERIFICATION,
        draft=partial(mail.email_verification, settings),
        ttl_s=settings.email_verify_ttl_s,
        verified_too=False,
        action=audit.EMAIL_VERIFICATION_SENT,
        ip=client.ip,
    )


async def verify(*, db: Database, settings: Settings, store: Store, token: str, client: Client) -> User:
    """Use up a verification token; the user, now verified. InvalidToken if it is not live.
    The first proof of the address removes the factors and sessions made before it."""
    token_hash = hash_token(token)
    revoked: Revocation | None = None
    async with db.transaction() as conn:
        user_id = await queries.find_live(conn=conn, token_hash=token_hash, purpose=EMAIL_VERIFICATION)
        # The user row before the token row: the lock order of every writer.
        account = await users.lock_credentials(conn, user_id=user_id) if user_id is not None else None
        if account is None:
            raise InvalidToken()
        if await queries.consume(conn=conn, token_hash=token_hash, purpose=EMAIL_VERIFICATION) != user_id:
            raise InvalidToken()  # used or voided meanwhile
        if not await queries.mark_verified(conn=conn, user_id=account.user_id):  # disabled
            raise InvalidToken()
        if not account.email_verified:
            had_mfa = await mfa_queries.turn_off(conn=conn, user_id=account.user_id)
            passkeys_removed = await passkey_queries.delete_all(conn=conn, user_id=account.user_id)
            revoked = await events.record(
                conn,
                settings=settings,
                user_id=account.user_id,
                event=Event.MAILBOX_PROVEN,
                client=client,
                email=account.email,
            )
            await audit.record(
                conn,
                action=audit.EMAIL_VERIFIED,
                actor_id=account.user_id,
                target_user_id=account.user_id,
                ip=client.ip,
                after={
                    "first_proof": True,
                    "sessions_revoked": len(revoked.session_ids),
                    "mfa_removed": had_mfa,
                    "passkeys_removed": passkeys_removed,
                },
            )
        else:
            await audit.record(
                conn,
                action=audit.EMAIL_VERIFIED,
                actor_id=account.user_id,
                target_user_id=account.user_id,
                ip=client.ip,
            )
        user = await users.get_held_user(conn, user_id=account.user_id)
    if revoked is not None:
        await events.publish(settings=settings, store=store, revoked=revoked)
    return user
