"""The login's second step: an `mfa_token` and a TOTP or recovery code, then the gate.

The token's attempt is counted before its code is looked at (it dies at the third wrong
code), the code is checked like a password (manas360.services.auth.codes), and under the
user row lock the token is spent, the gate decides (the account may have been disabled or
locked meanwhile; a security event since the token was issued killed it), the code is spent
and the session opens with the assurance of both factors.
"""

from __future__ import annotations

from manas360 import metrics
from manas360.clock import Clock
from manas360.db import Database
from manas360.errors import InvalidToken
from manas360.queries.auth import mfa as mfa_queries
from manas360.security.jwt import AccessTokenCodec
from manas360.security.secretbox import SecretBox
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import codes, gate, password_check
from manas360.services.auth.gate import Flow, Proof
from manas360.services.auth.mfa_challenge import ATTEMPTS, token_digest
from manas360.services.auth.sessions import Client
from manas360.services.auth.tokens import TokenPair
from manas360.settings import Settings
from manas360.store import Store


async def verify(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    clock: Clock,
    box: SecretBox,
    mfa_token: str,
    code: str,
    client: Client,
) -> TokenPair:
    """Complete a login with its mfa_token and a TOTP or recovery code: a new session's pair."""
    token_hash = token_digest(mfa_token)
    async with db.transaction() as conn:
        attempt = await mfa_queries.take_attempt(conn=conn, token_hash=token_hash, attempts=ATTEMPTS)
    account = None
    if attempt is not None:
        account = await users.get_credentials(
            conn=db.connection,
            user_id=attempt.user_id,
            source=client.source,
            known_source_s=settings.lockout_known_source_s,
        )
    if attempt is None or account is None:
        metrics.MFA_FAILURES.labels("bad_token").inc()
        raise InvalidToken()
    async with (
        codes.checked_code(
            db=db,
            settings=settings,
            store=store,
            box=box,
            clock=clock,
            account=account,
            code=code,
            client=client,
            flow=Flow.MFA_VERIFY,
        ) as match,
        db.transaction() as conn,
    ):
        current = await users.lock_credentials(
            conn, user_id=account.user_id, source=client.source, known_source_s=settings.lockout_known_source_s
        )
        if current is None or not await mfa_queries.use_token(
            conn=conn, token_hash=token_hash, user_id=account.user_id, attempts=ATTEMPTS
        ):
            metrics.MFA_FAILURES.labels("bad_token").inc()
            raise InvalidToken()
        proof = (
            await gate.decide(
                settings=settings,
                store=store,
                account=current,
                flow=Flow.MFA_VERIFY,
                proof=Proof(first=attempt.amr, second=True),
                client=client,
            )
        ).enforce()
        await codes.spend(conn, user_id=current.user_id, match=match)
        await password_check.record_attempt(
            conn, email=current.email, account=current, client=client, reason="ok", success=True
        )
        admitted = await gate.admit(
            conn,
            settings=settings,
            user_id=current.user_id,
            client=client,
            flow=Flow.MFA_VERIFY,
            proof=proof,
            action=audit.MFA_VERIFIED,
            details={"factor": match.factor},
        )
    metrics.LOGINS.labels("success").inc()
    return admitted.issue(settings=settings, codec=codec, clock=clock)
