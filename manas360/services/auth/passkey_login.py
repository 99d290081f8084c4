"""Signing in, and re-authenticating, with a passkey: one more flow into the one gate.

The challenge is spent first, in a transaction of its own; py_webauthn verifies the
assertion (origin, RP ID hash, user presence, signature) against the stored public key; then,
under the user row lock and the passkey's, the signature counter must have moved forward (a
counter that did not is a cloned authenticator: refused and audited), and the gate decides
with the proof the authenticator gave: user verified -> `("hwk","user")`, a complete login at
`aal` 2 even with MFA on, spared every lock; not verified -> `("hwk",)`, a first factor
that, with MFA on, continues with an `mfa_token` like a password. A failed assertion counts
toward no lock: a signature cannot be guessed, and a lock it set would only keep the owner
out.
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from webauthn import verify_authentication_response
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers import parse_authentication_credential_json
from webauthn.helpers.structs import AuthenticationCredential

from manas360 import metrics
from manas360.clock import Clock
from manas360.db import Database
from manas360.errors import AppError, InvalidCredentials, InvalidToken, MfaRequired
from manas360.queries.accounts.users import Credentials
from manas360.queries.auth import passkeys as queries
from manas360.queries.auth.passkeys import Challenge, StoredCredential
from manas360.security.jwt import AccessTokenCodec
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import gate, mfa_challenge, password_check, reauthenticate, sessions
from manas360.services.auth.gate import Flow
from manas360.services.auth.passkeys import LOGIN, REAUTHENTICATE, UNVERIFIED, checked, take_challenge, user_handle
from manas360.services.auth.principal import Principal
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import TokenPair, issue_pair
from manas360.settings import Settings
from manas360.store import Store

_REFUSALS = {
    "AccountLocked": "passkey_locked",
    "AccountDisabled": "passkey_disabled",
    "EmailNotVerified": "passkey_unverified",
}
"""login_attempts reasons of a passkey the gate refused."""


async def login(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    challenge_id: str,
    credential: dict[str, Any],
    client: Client,
) -> TokenPair:
    """A new session from a passkey assertion, or 403 MfaRequired (with an `mfa_token`) when
    the authenticator did not verify the user and the account has MFA on."""
    challenge = await take_challenge(db=db, challenge_id=challenge_id, purpose=LOGIN)
    stored, verified = await _verify(db=db, settings=settings, challenge=challenge, credential=credential)
    if challenge.for_email and challenge.user_id != stored.user_id:
        # Options asked for another address's passkeys, or an unknown one's (the same answer:
        # one's own passkey does not tell which addresses have accounts).
        raise InvalidToken()
    proof = gate.passkey_proof(user_verified=verified.user_verified)
    refusal: AppError | None = None
    async with db.transaction() as conn:
        current = await _lock(conn, settings=settings, challenge=challenge, stored=stored, client=client)
        refusal = await _counter_refusal(conn, stored=stored, verified=verified, client=client)
        if refusal is None:
            decision = await gate.decide(
                settings=settings, store=store, account=current, flow=Flow.PASSKEY_LOGIN, proof=proof, client=client
            )
            if decision.refusal is not None:
                refusal = decision.refusal
                await password_check.record_attempt(
                    conn,
                    email=current.email,
                    account=current,
                    client=client,
                    reason=_REFUSALS.get(refusal.code, "passkey_refused"),
                )
            elif decision.needs_second_factor:
                await _mark_used(conn, stored=stored, verified=verified)
                token = await mfa_challenge.issue(conn, user_id=current.user_id, amr=proof.amr)
                refusal = MfaRequired(mfa_token=token)
                await password_check.record_attempt(
                    conn, email=current.email, account=current, client=client, reason="passkey_mfa_required"
                )
                await audit.record(
                    conn, action=audit.MFA_CHALLENGED, actor_id=None, target_user_id=current.user_id, ip=client.ip
                )
            else:
                await _mark_used(conn, stored=stored, verified=verified)
                await password_check.record_attempt(
                    conn, email=current.email, account=current, client=client, reason="passkey", success=True
                )
                admitted = await gate.admit(
                    conn,
                    settings=settings,
                    user_id=current.user_id,
                    client=client,
                    flow=Flow.PASSKEY_LOGIN,
                    proof=proof,
                    action=audit.LOGIN,
                    details={"passkey_id": stored.id, "aal": proof.aal},
                )
    if refusal is not None:
        if isinstance(refusal, MfaRequired):
            metrics.LOGINS.labels("mfa_required").inc()
        raise refusal
    metrics.LOGINS.labels("success").inc()
    return admitted.issue(settings=settings, codec=codec, clock=clock)


async def reauthenticate_with_passkey(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    principal: Principal,
    challenge_id: str,
    credential: dict[str, Any],
    client: Client,
) -> TokenPair:
    """A fresh `auth_time` for the caller's session from one of their passkeys (`aal` 2 when
    the authenticator verified the user; with MFA on, one that did not is 403 MfaRequired)."""
    challenge = await take_challenge(
        db=db, challenge_id=challenge_id, purpose=REAUTHENTICATE, user_id=principal.user_id
    )
    stored, verified = await _verify(db=db, settings=settings, challenge=challenge, credential=credential)
    if stored.user_id != principal.user_id:
        raise InvalidCredentials(UNVERIFIED)
    refusal: AppError | None = None
    async with db.transaction() as conn:
        # The caller's own revocation is the first refusal (TokenRevoked), then the check's.
        await sessions.lock_user(conn, user_id=principal.user_id)
        await sessions.ensure_caller_live(conn, principal=principal)
        current = await _lock(conn, settings=settings, challenge=challenge, stored=stored, client=client)
        refusal = await _counter_refusal(conn, stored=stored, verified=verified, client=client)
        if refusal is None:
            proof = (
                await gate.decide(
                    settings=settings,
                    store=store,
                    account=current,
                    flow=Flow.REAUTHENTICATE,
                    proof=gate.passkey_proof(user_verified=verified.user_verified),
                    client=client,
                )
            ).enforce()
            await _mark_used(conn, stored=stored, verified=verified)
            refresh_token, assurance = await reauthenticate.renew(
                conn, settings=settings, principal=principal, proof=proof, client=client, factor="passkey"
            )
            user = await users.get_held_user(conn, user_id=current.user_id)
    if refusal is not None:
        raise refusal
    return issue_pair(
        settings=settings,
        codec=codec,
        clock=clock,
        user=user,
        session_id=principal.session_id,
        refresh_token=refresh_token,
        assurance=assurance,
    )


async def _verify(
    *, db: Database, settings: Settings, challenge: Challenge, credential: dict[str, Any]
) -> tuple[StoredCredential, VerifiedAuthentication]:
    """The stored passkey the assertion names, and py_webauthn's verdict on it (the counter is
    judged later, under the lock); InvalidCredentials for anything that does not verify."""
    party = settings.webauthn
    parsed: AuthenticationCredential = checked(lambda: parse_authentication_credential_json(credential))
    stored = await queries.find_credential(conn=db.connection, credential_id=parsed.raw_id)
    if stored is None:
        metrics.PASSKEY_FAILURES.labels("unknown_credential").inc()
        raise InvalidCredentials(UNVERIFIED)
    try:
        if parsed.response.user_handle not in (None, user_handle(stored.user_id)):
            raise InvalidCredentials(UNVERIFIED)  # the passkey of one account, claimed for another
        verified = checked(
            lambda: verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge.challenge,
                expected_rp_id=party.rp_id,
                expected_origin=list(party.origins),
                credential_public_key=stored.public_key,
                credential_current_sign_count=0,  # judged under the lock (_counter_refusal), and audited
            )
        )
    except InvalidCredentials:
        metrics.PASSKEY_FAILURES.labels("assertion").inc()
        raise
    return stored, verified


async def _lock(
    conn: BaseDBAsyncClient, *, settings: Settings, challenge: Challenge, stored: StoredCredential, client: Client
) -> Credentials:
    """The passkey owner's credentials under the row lock; the challenge must have been made
    after the owner's last security event (checked here for a discoverable login, which learnt
    the user only now), and the passkey must still exist."""
    current = await users.lock_credentials(
        conn, user_id=stored.user_id, source=client.source, known_source_s=settings.lockout_known_source_s
    )
    if current is None:
        raise InvalidCredentials(UNVERIFIED)
    if await queries.challenge_outlived(conn=conn, user_id=stored.user_id, created_at=challenge.created_at):
        raise InvalidToken()
    return current


async def _counter_refusal(
    conn: BaseDBAsyncClient, *, stored: StoredCredential, verified: VerifiedAuthentication, client: Client
) -> AppError | None:
    """InvalidCredentials (audited, in the caller's transaction) when the signature counter did
    not move forward although the authenticator keeps one: two authenticators hold one key."""
    current = await queries.lock_sign_count(conn=conn, passkey_id=stored.id, user_id=stored.user_id)
    if current is None:
        return InvalidCredentials(UNVERIFIED)  # removed meanwhile
    new = verified.new_sign_count
    if (new > 0 or current > 0) and new <= current:
        metrics.PASSKEY_FAILURES.labels("counter").inc()
        await audit.record(
            conn,
            action=audit.PASSKEY_COUNTER_REGRESSED,
            actor_id=None,
            target_user_id=stored.user_id,
            ip=client.ip,
            before={"sign_count": current},
            after={"passkey_id": stored.id, "sign_count": new},
        )
        return InvalidCredentials(UNVERIFIED)
    return None


async def _mark_used(conn: BaseDBAsyncClient, *, stored: StoredCredential, verified: VerifiedAuthentication) -> None:
    await queries.mark_used(
        conn=conn, passkey_id=stored.id, sign_count=verified.new_sign_count, backed_up=verified.credential_backed_up
    )
