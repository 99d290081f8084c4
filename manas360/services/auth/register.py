"""Registration: a new account (role `user`, plan free), its verification mail, and, when
the gate admits it, its first session.

The verification mail commits with the account, or neither exists. With
REQUIRE_VERIFIED_EMAIL on, the gate refuses a session to the unverified new account: the
answer carries the user and no tokens (`verification_required`), so nobody holds a session
of an address they never proved.
"""

from __future__ import annotations

from dataclasses import dataclass

from manas360.clock import Clock, db_now
from manas360.db import Database
from manas360.errors import EmailNotVerified, EmailTaken, ValidationError
from manas360.queries.accounts import lifecycle as lifecycle_queries
from manas360.security.jwt import AccessTokenCodec
from manas360.security.password_rules import password_problem
from manas360.security.passwords import hash_password
from manas360.services.accounts import users, verification
from manas360.services.accounts.users import User
from manas360.services.admin import audit
from manas360.services.auth import gate
from manas360.services.auth.gate import Flow
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import TokenPair, issue_pair
from manas360.services.integration import webhooks
from manas360.settings import Settings
from manas360.store import Store


@dataclass(frozen=True, slots=True)
class Registration:
    user: User
    pair: TokenPair | None
    """The first session's pair; None when the email must be verified before any session."""


async def register(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    email: str,
    password: str,
    display_name: str,
    client: Client,
) -> Registration:
    """Create an account and, if the gate admits it, its first session."""
    email = users.normalize_email(email)
    problem = users.email_problem(email)
    if problem:
        raise ValidationError({"email": problem})
    refused = password_problem(password, email=email)
    if refused:
        raise ValidationError({"password": refused})
    password_hash = await hash_password(password=password, cost=settings.bcrypt_cost)
    async with db.transaction() as conn:
        await lifecycle_queries.lock_address(conn=conn, email=email)
        if await lifecycle_queries.address_reserved(conn=conn, email=email):
            raise EmailTaken()  # an old address its account may still take back (an email change's window)
        user_id = await users.insert_user(
            conn, email=email, password_hash=password_hash, display_name=display_name.strip()
        )
        account = await users.lock_credentials(conn, user_id=user_id, source=client.source)
        if account is None:
            raise RuntimeError(f"user {user_id} is not readable in the transaction that created it")
        decision = await gate.decide(
            settings=settings, store=store, account=account, flow=Flow.REGISTER, proof=gate.PASSWORD, client=client
        )
        session = None
        if decision.admitted:
            session = await gate.open_session(
                conn,
                settings=settings,
                user_id=user_id,
                client=client,
                flow=Flow.REGISTER,
                proof=decision.enforce(),
                now=await db_now(conn),
            )
        elif not isinstance(decision.refusal, EmailNotVerified):
            decision.enforce()
        await audit.record(
            conn,
            action=audit.REGISTER,
            actor_id=user_id,
            target_user_id=user_id,
            ip=client.ip,
            after={"email": email, "session_id": session[0] if session else None},
        )
        # The verification mail commits with the account, or neither exists.
        await verification.send_link(conn, settings=settings, user_id=user_id, email=email, ip=client.ip)
        await webhooks.user_changed(conn, settings=settings, user_id=user_id, event=webhooks.USER_CREATED)
        user = await users.get_held_user(conn, user_id=user_id)  # inserted above
    if session is None:
        return Registration(user=user, pair=None)
    session_id, refresh_token, assurance = session
    return Registration(
        user=user,
        pair=issue_pair(
            settings=settings,
            codec=codec,
            clock=clock,
            user=user,
            session_id=session_id,
            refresh_token=refresh_token,
            assurance=assurance,
        ),
    )
