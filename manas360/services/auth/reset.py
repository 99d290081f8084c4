"""Password reset: a request mails a single-use link; confirming it sets a new password.

Request. Whatever the address, the answer is the same 202 after the same work: one SQL
statement (manas360.queries.accounts.account_tokens.REQUEST_LINK_SQL) looks the account up, keeps
at most MAX_LIVE live links (a newer request drops the oldest beyond, never the others, so
nobody can keep killing the owner's link), stores the new token's hash and queues the mail,
all on zero rows when there is no active account or it had MAIL_PER_ACCOUNT_HOURLY reset
mails this hour, plus one audit entry; no bcrypt, no branch that only a known address
takes. Nothing else changes: the old password keeps working until a confirm.

Confirm. A reset link proves control of the mailbox, nothing more: it may set a password,
never skip a second factor. So with MFA on (and the address verified), the confirm also
needs a `code`: without one, 403 MfaRequired and nothing changes (the link stays usable); a
wrong one is counted like any code (401, the link stays usable); a locked source or account
is refused (423). With MFA off the confirm is accepted under any lock, and clears it.
On an account whose address was never verified, the confirm is the first proof of the
mailbox: the TOTP secret and recovery codes made before it go, and no second factor is
asked (those factors were never tied to a proven owner).

Then, in one transaction under the user row lock: the link is used up (compare-and-set: of
two concurrent confirms exactly one commits), the gate admits the flow, the password is
set, every lock of the account is cleared, and the security event revokes every session,
voids every other one-time link and mails the owner; a new session opens with `amr`
`["email"]` (plus `"otp"` with a code), `aal` 1. Redis is told after the commit.
"""

from __future__ import annotations

from functools import partial

from manas360.clock import Clock
from manas360.db import Database
from manas360.errors import InvalidToken, MfaRequired, ValidationError
from manas360.queries.accounts import account_tokens as queries
from manas360.queries.auth import mfa as mfa_queries
from manas360.queries.auth import passkeys as passkey_queries
from manas360.security.jwt import AccessTokenCodec
from manas360.security.password_rules import password_problem
from manas360.security.passwords import hash_password
from manas360.security.secretbox import SecretBox
from manas360.services.accounts import users
from manas360.services.accounts.account_tokens import PASSWORD_RESET, hash_token, mail_link
from manas360.services.admin import audit
from manas360.services.auth import codes, events, gate, lockout
from manas360.services.auth.events import Event
from manas360.services.auth.gate import EMAIL, Flow, Proof
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import TokenPair
from manas360.services.mail import messages as mail
from manas360.settings import Settings
from manas360.store import Store


async def request_reset(*, db: Database, settings: Settings, email: str, client: Client) -> None:
    """Queue a reset mail if the address is an active account's (within its hourly allowance);
    the same work either way."""
    await mail_link(
        db=db,
        settings=settings,
        email=users.normalize_email(email),
        purpose=PASSWORD_RESET,
        draft=partial(mail.password_reset, settings),
        ttl_s=settings.password_reset_ttl_s,
        verified_too=True,
        action=audit.PASSWORD_RESET_REQUESTED,
        ip=client.ip,
    )


async def confirm_reset(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    box: SecretBox,
    token: str,
    new_password: str,
    code: str | None,
    client: Client,
) -> TokenPair:
    """Use up a reset link: new password, no lock, every session revoked, a new session's pair."""
    token_hash = hash_token(token)
    # Checked before bcrypt, so a made-up token costs no hashing.
    user_id = await queries.find_live(conn=db.connection, token_hash=token_hash, purpose=PASSWORD_RESET)
    account = None
    if user_id is not None:
        account = await users.get_credentials(
            conn=db.connection, user_id=user_id, source=client.source, known_source_s=settings.lockout_known_source_s
        )
    if user_id is None or account is None:
        raise InvalidToken()
    refused = password_problem(new_password, email=account.email)
    if refused:  # the link stays usable
        raise ValidationError({"password": refused, "new_password": refused})
    second_factor_owed = account.mfa_enabled and account.email_verified
    if second_factor_owed and code is None:
        raise MfaRequired()
    new_hash = await hash_password(password=new_password, cost=settings.bcrypt_cost)
    async with (
        codes.optional_code(
            db=db,
            settings=settings,
            store=store,
            box=box,
            clock=clock,
            account=account,
            code=code if second_factor_owed else None,
            client=client,
            flow=Flow.PASSWORD_RESET,
        ) as match,
        db.transaction() as conn,
    ):
        # The user row first, then the token: the lock order of every writer (an event voiding
        # this token takes them in the same order, so the two queue, never deadlock).
        current = await users.lock_credentials(
            conn, user_id=user_id, source=client.source, known_source_s=settings.lockout_known_source_s
        )
        if (
            current is None
            or await queries.consume(conn=conn, token_hash=token_hash, purpose=PASSWORD_RESET) != user_id
        ):
            raise InvalidToken()  # used, voided or expired meanwhile: another confirm won
        first_proof = not current.email_verified
        if first_proof:
            # Pre-hijacking: factors set up before anyone proved the address go with this proof.
            await mfa_queries.turn_off(conn=conn, user_id=user_id)
            await passkey_queries.delete_all(conn=conn, user_id=user_id)
            await queries.mark_verified(conn=conn, user_id=user_id)
            current = current._replace(mfa_enabled=False, email_verified=True)
        proof = (
            await gate.decide(
                settings=settings,
                store=store,
                account=current,
                flow=Flow.PASSWORD_RESET,
                proof=Proof(first=(EMAIL,), second=match is not None),
                client=client,
            )
        ).enforce()
        if match is not None:
            await codes.spend(conn, user_id=user_id, match=match)
        await users.set_password(conn, user_id=user_id, version=current.password_version, new_hash=new_hash)
        email = await lockout.clear_locks(conn, settings=settings, store=store, user_id=user_id)
        revoked = await events.record(
            conn, settings=settings, user_id=user_id, event=Event.PASSWORD_RESET, client=client, email=current.email
        )
        admitted = await gate.admit(  # after the epoch the reset moved: the new session outlives it
            conn,
            settings=settings,
            user_id=user_id,
            client=client,
            flow=Flow.PASSWORD_RESET,
            proof=proof,
            action=audit.PASSWORD_RESET,
            details={
                "sessions_revoked": len(revoked.session_ids),
                "was_locked": lockout.database_lock_ms(current) > 0,
                "first_proof": first_proof,
                "second_factor": match.factor if match is not None else None,
            },
        )
    await lockout.clear_after_commit(settings=settings, store=store, email=email)
    await events.publish(settings=settings, store=store, revoked=revoked)
    return admitted.issue(settings=settings, codec=codec, clock=clock)
