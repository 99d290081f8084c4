"""Password reset: a request mails a single-use link; confirming it sets a new password.

Request. Whatever the address, the answer is the same 202 after the same work: one SQL
statement (manas360.queries.account_tokens.REQUEST_RESET_SQL) looks the account up, voids its
older reset tokens, stores the new token's hash and queues the mail, all on zero rows when
there is no active account, plus one audit entry; no bcrypt, no branch that only a known
address takes. Nothing else changes: the old password keeps working until a confirm.

Confirm. The token must be live (unused, unexpired by the database's clock). Then, in one
transaction under the user row lock: the token is used up (compare-and-set: of two
concurrent confirms exactly one commits), the password is set, any lock is cleared (the
PostgreSQL lock and the Redis counters), every session is revoked, the epoch moves, and a
new session opens. As for any revocation, Redis is told after the commit.
"""

from __future__ import annotations

from tortoise import connections
from tortoise.transactions import in_transaction

from manas360.clock import Clock, db_now, to_ms
from manas360.errors import InvalidToken
from manas360.models import ACCOUNT_ACTIVE
from manas360.queries import account_tokens as queries
from manas360.repair import run_to_completion
from manas360.security.jwt import AccessTokenCodec
from manas360.security.passwords import hash_password
from manas360.services import audit, auth, lockout, mail, revocation, sessions, users
from manas360.services.account_tokens import PASSWORD_RESET, hash_token, new_token
from manas360.services.sessions import Client
from manas360.services.tokens import TokenPair, issue_pair
from manas360.settings import Settings
from manas360.store import Store


async def request_reset(*, settings: Settings, email: str, client: Client) -> None:
    """Queue a reset mail if the address is an active account's; the same work either way."""
    email = users.normalize_email(email)
    token, token_hash = new_token()
    draft = mail.password_reset(settings, token=token)
    async with in_transaction() as conn:
        user_id = await queries.request_reset(conn=conn, email=email, token_hash=token_hash,
                                              ttl_s=settings.password_reset_ttl_s, subject=draft.subject,
                                              body=draft.body)
        await audit.record(conn, action=audit.PASSWORD_RESET_REQUESTED, actor_id=None, target_user_id=user_id,
                           ip=client.ip, after={"email": email, "mailed": user_id is not None})


async def confirm_reset(*, settings: Settings, store: Store, codec: AccessTokenCodec, clock: Clock, token: str,
                        new_password: str, client: Client) -> TokenPair:
    """Use up a reset token: new password, no lock, every session revoked, a new session's pair."""
    token_hash = hash_token(token)
    # Checked before bcrypt, so a made-up token costs no hashing.
    user_id = await queries.find_live(conn=connections.get("default"), token_hash=token_hash, purpose=PASSWORD_RESET)
    if user_id is None:
        raise InvalidToken()
    new_hash = await hash_password(password=new_password, cost=settings.bcrypt_cost)
    async with in_transaction() as conn:
        # The user row first, then the token: the lock order of every writer (a disable
        # voiding this token takes them in the same order, so the two queue, never deadlock).
        account = await users.lock_credentials(conn, user_id=user_id)
        if account is None or account.status != ACCOUNT_ACTIVE:
            raise InvalidToken()
        if await queries.consume(conn=conn, token_hash=token_hash, purpose=PASSWORD_RESET) != user_id:
            raise InvalidToken()  # used, voided or expired meanwhile: another confirm won
        email = await queries.set_reset_password(conn=conn, user_id=user_id, password_hash=new_hash)
        await queries.void_tokens(conn=conn, user_id=user_id, purposes=[PASSWORD_RESET])
        # Under the row lock, like an unlock: a failure counted concurrently comes wholly before.
        await lockout.clear_failures(store=store, email=email)
        now, session_ids, epoch = await auth.revoke_for_new_password(conn, user_id=user_id, reason="password_reset")
        session_id, refresh_token = await sessions.open_session(  # stamped after the epoch it outlives
            conn, user_id=user_id, client=client, refresh_ttl_s=settings.jwt_refresh_ttl, now=await db_now(conn))
        await audit.record(conn, action=audit.PASSWORD_RESET, actor_id=user_id, target_user_id=user_id, ip=client.ip,
                           after={"sessions_revoked": len(session_ids), "session_id": session_id,
                                  "was_locked": account.lock_ms > 0})
        user = await users.get_held_user(conn, user_id=user_id)
    await run_to_completion(lockout.clear_failures(store=store, email=email))
    await run_to_completion(revocation.publish(store, settings=settings, user_id=user_id, now_ms=to_ms(now),
                                               epoch_ms=epoch, session_ids=session_ids))
    return issue_pair(settings=settings, codec=codec, clock=clock, user=user, session_id=session_id,
                      refresh_token=refresh_token)
