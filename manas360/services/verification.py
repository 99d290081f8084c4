"""Email verification: registration mails a single-use link, confirming it marks the
address verified, a signed-in user may ask for a new link, and with REQUIRE_VERIFIED_EMAIL
an unverified address cannot sign in.

The token and its mail commit in the transaction that creates the need for them (the new
account, the resend), so there is never a mail without a stored token, or a token whose
mail was lost. A new link voids the older ones.
"""

from __future__ import annotations

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from manas360.errors import EmailNotVerified, InvalidToken
from manas360.queries import account_tokens as queries
from manas360.services import audit, mail, sessions, users
from manas360.services.account_tokens import EMAIL_VERIFICATION, hash_token, new_token
from manas360.services.principal import Principal
from manas360.services.sessions import Client
from manas360.services.users import User
from manas360.settings import Settings


async def send_link(conn: BaseDBAsyncClient, *, settings: Settings, user_id: str, email: str, ip: str) -> None:
    """In the caller's transaction: void older verification tokens, store a new one and
    queue its mail."""
    token, token_hash = new_token()
    voided = await queries.void_tokens(conn=conn, user_id=user_id, purposes=[EMAIL_VERIFICATION])
    await queries.insert_token(conn=conn, token_hash=token_hash, user_id=user_id, purpose=EMAIL_VERIFICATION,
                               ttl_s=settings.email_verify_ttl_s)
    mail_id = await mail.queue(conn, recipient=email, draft=mail.email_verification(settings, token=token),
                               user_id=user_id)
    await audit.record(conn, action=audit.EMAIL_VERIFICATION_SENT, actor_id=user_id, target_user_id=user_id, ip=ip,
                       after={"mail_id": mail_id, "voided": voided})


async def resend(*, settings: Settings, principal: Principal, client: Client) -> None:
    """A new link for the caller, unless the address is already verified (then nothing)."""
    async with in_transaction() as conn:
        if not await sessions.lock_user(conn, user_id=principal.user_id):
            return
        user = await users.get_held_user(conn, user_id=principal.user_id)
        if user.email_verified:
            return
        await send_link(conn, settings=settings, user_id=user.id, email=user.email, ip=client.ip)


async def verify(*, token: str, client: Client) -> User:
    """Use up a verification token; the user, now verified. InvalidToken if it is not live."""
    token_hash = hash_token(token)
    async with in_transaction() as conn:
        user_id = await queries.find_live(conn=conn, token_hash=token_hash, purpose=EMAIL_VERIFICATION)
        # The user row before the token row: the lock order of every writer.
        if user_id is None or not await sessions.lock_user(conn, user_id=user_id):
            raise InvalidToken()
        if await queries.consume(conn=conn, token_hash=token_hash, purpose=EMAIL_VERIFICATION) != user_id:
            raise InvalidToken()  # used or voided meanwhile
        if not await queries.mark_verified(conn=conn, user_id=user_id):  # disabled
            raise InvalidToken()
        await audit.record(conn, action=audit.EMAIL_VERIFIED, actor_id=user_id, target_user_id=user_id, ip=client.ip)
        return await users.get_held_user(conn, user_id=user_id)


async def ensure_verified(conn: BaseDBAsyncClient | None = None, *, user_id: str) -> None:
    """EmailNotVerified unless the user's address is verified."""
    if not await queries.is_verified(conn=conn or connections.get("default"), user_id=user_id):
        raise EmailNotVerified()
