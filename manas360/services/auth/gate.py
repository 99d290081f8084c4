"""The one gate into an account: every flow that can end in a session calls `decide`.

A flow (register, login, the MFA step, a password-reset confirm, a refresh, a password
change, a re-authentication, a passkey login, a deletion cancel) collects what the user proved
(`Proof`) and asks here, once, under the user's row lock, whether a session may be issued
and at which assurance. The rules live only here:

1. the account is `active` (else 403 AccountDisabled, or AccountPendingDeletion);
2. its email is verified when REQUIRE_VERIFIED_EMAIL is on (else 403 EmailNotVerified);
3. the client's source is not locked out of it, per source or account-wide (else 423);
   a refresh presents no credential and is not subject to locks, nor is a reset confirm
   of an account without MFA (the mailbox proves the owner, and the reset clears the locks),
   nor a passkey that verified the user (locks hold back guessing, and a passkey's signature
   cannot be guessed: nobody can keep its owner out by failing passwords);
4. with MFA on, a second factor was presented in this flow (else 403 MfaRequired: the
   login continues with an `mfa_token`, other flows ask for a `code`). A reset link proves
   a mailbox, never a second factor; a refresh and a registration carry none of their own.

The assurance the session gets is the proof's: `amr` and `aal` as docs/auth.md tabulates
them, `auth_time` the database's clock now. A new credential type is one more `Proof`,
never a second gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.clock import Clock, db_now
from manas360.errors import AccountLocked, AppError, EmailNotVerified, MfaRequired, status_refusal
from manas360.models import ACCOUNT_ACTIVE
from manas360.queries.accounts import users as user_queries
from manas360.queries.accounts.users import Credentials
from manas360.queries.auth import login as login_queries
from manas360.security.jwt import AccessTokenCodec
from manas360.services.accounts import users
from manas360.services.accounts.users import User
from manas360.services.admin import audit
from manas360.services.auth import lockout, sessions
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import Assurance, TokenPair, issue_pair
from manas360.settings import Settings
from manas360.store import Store

# Authentication method references (RFC 8176), as the tokens' `amr` carries them.
PWD, OTP, MFA, HWK, USER, EMAIL = "pwd", "otp", "mfa", "hwk", "user", "email"


class Flow(StrEnum):
    REGISTER = "register"
    LOGIN = "login"
    MFA_VERIFY = "mfa_verify"
    PASSWORD_RESET = "password_reset"
    REFRESH = "refresh"
    PASSWORD_CHANGE = "password_change"
    REAUTHENTICATE = "reauthenticate"
    PASSKEY_LOGIN = "passkey_login"
    DELETION_CANCEL = "deletion_cancel"
    """The mailed link and the password bring a pending account back (its status restored first)."""
    # Credential checks that end in a change, not a session (counted and audited under their name).
    MFA_DISABLE = "mfa_disable"
    RECOVERY_CODES = "mfa_recovery_codes"


_PRESENTS_NO_CREDENTIAL = frozenset({Flow.REGISTER, Flow.REFRESH})
"""Flows the lock and second-factor rules do not apply to: a new account has neither, and a
refresh continues a session the gate already admitted (its own factors)."""
_LOGINS = frozenset({Flow.LOGIN, Flow.MFA_VERIFY, Flow.PASSWORD_RESET, Flow.PASSKEY_LOGIN, Flow.DELETION_CANCEL})
"""Flows that complete a login: their source becomes a known source of the account."""


@dataclass(frozen=True, slots=True)
class Proof:
    """What a flow collected: its first factor and whether a second one was accepted."""

    first: tuple[str, ...]
    """("pwd",), ("email",) for a reset link, ("hwk",) or ("hwk", "user") for a passkey."""
    second: bool = False
    """A TOTP or recovery code was accepted in this flow."""

    @property
    def second_factor(self) -> bool:
        """Whether this proof satisfies MFA: a code, or a passkey that verified the user."""
        return self.second or USER in self.first

    @property
    def amr(self) -> tuple[str, ...]:
        if EMAIL in self.first:  # a mailbox and a code: two things, still not a login's two factors
            return (*self.first, OTP) if self.second else self.first
        if self.second:
            return (*self.first, OTP, MFA)
        return (*self.first, MFA) if USER in self.first else self.first

    @property
    def aal(self) -> int:
        return 2 if self.second_factor and EMAIL not in self.first else 1


PASSWORD = Proof(first=(PWD,))
PASSWORD_AND_CODE = Proof(first=(PWD,), second=True)
PASSKEY = Proof(first=(HWK,))
"""A passkey whose authenticator did not verify the user: a first factor."""
PASSKEY_VERIFIED = Proof(first=(HWK, USER))
"""A passkey whose authenticator verified the user (PIN, biometrics): a complete login."""


def passkey_proof(*, user_verified: bool) -> Proof:
    return PASSKEY_VERIFIED if user_verified else PASSKEY


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer: admitted (with the assurance's amr and aal), refused, or waiting for a
    second factor (neither set)."""

    proof: Proof | None = None
    refusal: AppError | None = None

    @property
    def admitted(self) -> bool:
        return self.proof is not None

    @property
    def needs_second_factor(self) -> bool:
        return self.proof is None and self.refusal is None

    def enforce(self) -> Proof:
        """The admitted proof; otherwise raise the refusal, or MfaRequired (with no token)."""
        if self.proof is not None:
            return self.proof
        raise self.refusal if self.refusal is not None else MfaRequired()


async def decide(
    *, settings: Settings, store: Store, account: Credentials, flow: Flow, proof: Proof, client: Client
) -> Decision:
    """Whether `account` (read under its row lock, for the client's source) may have a session
    from `flow` with `proof`: the rules of the module docstring, in that order."""
    if account.status != ACCOUNT_ACTIVE:
        return Decision(refusal=status_refusal(account.status))
    if settings.require_verified_email and not account.email_verified:
        return Decision(refusal=EmailNotVerified())
    checks_credentials = flow not in _PRESENTS_NO_CREDENTIAL
    spared_locks = (flow is Flow.PASSWORD_RESET and not account.mfa_enabled) or (
        HWK in proof.first and USER in proof.first
    )
    if checks_credentials and not spared_locks:
        try:
            await lockout.ensure_unlocked(store=store, account=account, client=client)
        except AccountLocked as exc:
            return Decision(refusal=exc)
    if checks_credentials and account.mfa_enabled and not proof.second_factor:
        return Decision()
    return Decision(proof=proof)


async def open_session(
    conn: BaseDBAsyncClient,
    *,
    settings: Settings,
    user_id: str,
    client: Client,
    flow: Flow,
    proof: Proof,
    now: datetime,
) -> tuple[str, str, Assurance]:
    """The session an admitted flow earns: (session id, refresh token, its assurance). After
    a completed login the client's source becomes a known source of the account (spared its
    account-wide lock for LOCKOUT_KNOWN_SOURCE_S)."""
    assurance = Assurance(auth_time=now, amr=proof.amr, aal=proof.aal)
    session_id, refresh_token = await sessions.open_session(
        conn,
        user_id=user_id,
        client=client,
        refresh_ttl_s=min(settings.jwt_refresh_ttl, settings.session_max_age_s),
        now=now,
        assurance=assurance,
    )
    await user_queries.touch_last_login(conn=conn, user_id=user_id, now=now)
    if flow in _LOGINS:
        await login_queries.remember_source(conn=conn, user_id=user_id, source=client.source)
    return session_id, refresh_token, assurance


class Admission(NamedTuple):
    """A session an admitted flow opened, and its user as the flow's transaction left them:
    `issue` mints the token pair once that transaction has committed."""

    user: User
    session_id: str
    refresh_token: str
    assurance: Assurance

    def issue(self, *, settings: Settings, codec: AccessTokenCodec, clock: Clock) -> TokenPair:
        return issue_pair(
            settings=settings,
            codec=codec,
            clock=clock,
            user=self.user,
            session_id=self.session_id,
            refresh_token=self.refresh_token,
            assurance=self.assurance,
        )


async def admit(
    conn: BaseDBAsyncClient,
    *,
    settings: Settings,
    user_id: str,
    client: Client,
    flow: Flow,
    proof: Proof,
    action: str,
    details: dict[str, Any] | None = None,
) -> Admission:
    """What every flow does once `decide` has admitted it, in the flow's transaction and under
    its lock on the user's row: open the session (stamped with the database's clock now, after
    any epoch the flow moved, so it outlives the sessions the flow revoked), audit it as
    `action` with its session id and `details`, and read the user back for the tokens."""
    session_id, refresh_token, assurance = await open_session(
        conn, settings=settings, user_id=user_id, client=client, flow=flow, proof=proof, now=await db_now(conn)
    )
    await audit.record(
        conn,
        action=action,
        actor_id=user_id,
        target_user_id=user_id,
        ip=client.ip,
        after={"session_id": session_id, **(details or {})},
    )
    user = await users.get_held_user(conn, user_id=user_id)
    return Admission(user, session_id, refresh_token, assurance)
