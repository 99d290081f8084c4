"""The one gate into an account, held against every flow that can end in a session.

One table: each row is a flow (register, login, the MFA step, a reset confirm, a refresh, a
password change, a re-authentication, a passkey login or step-up with and without user
verification, a deletion cancel) presenting the RIGHT credentials of an account in one
state (active, disabled, unverified with REQUIRE_VERIFIED_EMAIL on, locked for this source,
locked account-wide, MFA on without and with a second factor presented, pending deletion),
and says the exact
answer and whether a new session row exists afterwards. A new flow or state is one row.

States are set in PostgreSQL (and the user's cached context dropped), the way an operator's
change or a concurrent request would leave them, so each row tests the gate's own rules.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

import pytest

from manas360.services.access.entitlements import forget_user
from manas360.settings import load_settings
from tests.auth.mfa_helpers import CONFIRM, SETUP, code_at
from tests.auth.passkey_helpers import LOGIN as PASSKEY_LOGIN
from tests.auth.passkey_helpers import REAUTH_OPTIONS, authenticator_for, enrol, login_options
from tests.fixtures.accounts import API, PASSWORD, Account, bearer, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.authenticator import Authenticator

NEW_PASSWORD = "an entirely new passphrase"
WRONG = "definitely wrong"

ACTIVE, DISABLED, UNVERIFIED = "active", "disabled", "unverified (required)"
SOURCE_LOCKED, ACCOUNT_LOCKED = "locked for this source", "locked account-wide"
MFA_WITHOUT, MFA_WITH = "MFA on, no second factor", "MFA on, a second factor"
PENDING = "pending deletion"


@dataclass
class Case:
    account: Account
    secret: str | None = None
    """The TOTP secret when MFA is on."""
    mfa_token: str | None = None
    reset_token: str | None = None
    authenticator: Authenticator | None = None
    """The account's passkey, for the passkey flows."""
    cancel_token: str | None = None
    offsets: list[int] = field(default_factory=lambda: [-1])

    def code(self) -> str:
        assert self.secret is not None
        self.offsets.append(self.offsets[-1] + 1)
        return code_at(self.secret, self.offsets[-1])


@pytest.fixture(scope="module")
async def strict_app(environ, database, redis_raw):
    async with running_app(load_settings({**environ, "REQUIRE_VERIFIED_EMAIL": "true"})) as app:
        yield app


async def _arrange(client, pg, app, state: str, flow: str) -> Case:
    """A fresh account (its session S0 the caller's) in `state`, ready for `flow`."""
    account = await register(client)
    await pg.execute("UPDATE user_accounts SET email_verified_at = now() WHERE id = $1", account.id)
    case = Case(account)
    if flow.startswith("passkey"):  # enrolled while verified, fresh and at MFA off: a passkey of the owner's
        case.authenticator = authenticator_for(app.ctx.deps.settings, user_verified="no UV" not in flow)
        await enrol(client, account, case.authenticator)
    if state == UNVERIFIED:
        await pg.execute("UPDATE user_accounts SET email_verified_at = NULL WHERE id = $1", account.id)
    if state in (MFA_WITHOUT, MFA_WITH) or flow == "mfa_verify":
        setup = await client.post(SETUP, headers=account.headers)
        case.secret = setup.json()["secret"]
        confirmed = await client.post(CONFIRM, headers=account.headers, json={"code": code_at(case.secret, -1)})
        assert confirmed.status_code == 200, confirmed.text  # S0 stays at aal 1 (no step-up)
    if flow == "mfa_verify":
        login = await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
        assert login.json()["error"] == "MfaRequired", login.text
        case.mfa_token = login.json()["mfa_token"]
    if flow == "password_reset":
        case.reset_token = secrets.token_urlsafe(32)
        await pg.execute(
            "INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at) "
            "VALUES ($1, $2, 'password_reset', now() + interval '30 minutes')",
            hashlib.sha256(case.reset_token.encode()).hexdigest(),
            account.id,
        )
    if state == DISABLED:
        await pg.execute("UPDATE user_accounts SET status = 'disabled' WHERE id = $1", account.id)
    elif state == SOURCE_LOCKED:
        for _ in range(5):
            wrong = await client.post(f"{API}/auth/login", json={"email": account.email, "password": WRONG})
            assert wrong.status_code == 401
    elif state == ACCOUNT_LOCKED:  # set from elsewhere; this source never completed a login of it
        await pg.execute(
            "UPDATE user_accounts SET locked_until = now() + interval '15 minutes' WHERE id = $1", account.id
        )
    if state == PENDING:
        await pg.execute(
            "UPDATE user_accounts SET status_before_deletion = status, status = 'pending_deletion', "
            "deletion_at = now() + interval '1 day' WHERE id = $1",
            account.id,
        )
    if flow == "deletion_cancel":  # scheduled over whatever state the account is in
        case.cancel_token = secrets.token_urlsafe(32)
        await pg.execute(
            "UPDATE user_accounts SET status_before_deletion = status, status = 'pending_deletion', "
            "deletion_requested_at = now(), deletion_at = now() + interval '1 day', deletion_cancel_hash = $2 "
            "WHERE id = $1",
            account.id,
            hashlib.sha256(case.cancel_token.encode()).hexdigest(),
        )
    await forget_user(store=app.ctx.deps.store, user_id=account.id)
    return case


async def _run(client, flow: str, case: Case, *, with_code: bool):
    account = case.account
    code = {"code": case.code()} if with_code else {}
    if flow == "register":
        return await client.post(f"{API}/auth/register", json={"email": f"new-{account.email}", "password": PASSWORD})
    if flow == "login":
        return await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    if flow == "mfa_verify":
        return await client.post(f"{API}/auth/mfa/verify", json={"mfa_token": case.mfa_token, "code": case.code()})
    if flow == "password_reset":
        return await client.post(
            f"{API}/auth/password-reset/confirm", json={"token": case.reset_token, "new_password": NEW_PASSWORD, **code}
        )
    if flow == "refresh":
        return await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    if flow == "password_change":
        return await client.post(
            f"{API}/auth/password",
            headers=account.headers,
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD, **code},
        )
    if flow == "reauthenticate":
        return await client.post(
            f"{API}/auth/reauthenticate", headers=account.headers, json={"password": PASSWORD, **code}
        )
    if flow.startswith("passkey login"):
        assert case.authenticator is not None
        ceremony = await login_options(client)
        return await client.post(
            PASSKEY_LOGIN,
            json={"challenge_id": ceremony["challenge_id"], "credential": case.authenticator.get(ceremony["options"])},
        )
    if flow.startswith("passkey step-up"):
        assert case.authenticator is not None
        options = await client.post(REAUTH_OPTIONS, headers=account.headers)
        if options.status_code != 200:  # a disabled account's token is refused before any ceremony
            return options
        ceremony = options.json()
        return await client.post(
            f"{API}/auth/reauthenticate",
            headers=account.headers,
            json={"challenge_id": ceremony["challenge_id"], "credential": case.authenticator.get(ceremony["options"])},
        )
    if flow == "deletion_cancel":
        return await client.post(
            f"{API}/auth/account-deletion/cancel", json={"token": case.cancel_token, "password": PASSWORD, **code}
        )
    raise AssertionError(flow)


OK, NO_SESSION = True, False
MATRIX = [
    # flow, state, answer (status, error), a new session afterwards
    ("register", ACTIVE, (201, None), OK),
    ("register", UNVERIFIED, (201, None), NO_SESSION),  # {user, verification_required}, no tokens
    ("login", ACTIVE, (200, None), OK),
    ("login", DISABLED, (403, "AccountDisabled"), NO_SESSION),
    ("login", UNVERIFIED, (403, "EmailNotVerified"), NO_SESSION),
    ("login", SOURCE_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("login", ACCOUNT_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("login", MFA_WITHOUT, (403, "MfaRequired"), NO_SESSION),
    ("mfa_verify", ACTIVE, (200, None), OK),
    ("mfa_verify", DISABLED, (403, "AccountDisabled"), NO_SESSION),
    ("mfa_verify", UNVERIFIED, (403, "EmailNotVerified"), NO_SESSION),
    ("mfa_verify", SOURCE_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("mfa_verify", ACCOUNT_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("password_reset", ACTIVE, (200, None), OK),
    ("password_reset", DISABLED, (403, "AccountDisabled"), NO_SESSION),
    ("password_reset", UNVERIFIED, (200, None), OK),  # the link is the first proof of the mailbox
    ("password_reset", SOURCE_LOCKED, (200, None), OK),  # MFA off: accepted under any lock, and clears it
    ("password_reset", ACCOUNT_LOCKED, (200, None), OK),
    ("password_reset", MFA_WITHOUT, (403, "MfaRequired"), NO_SESSION),  # a link is never a second factor
    ("password_reset", MFA_WITH, (200, None), OK),
    ("refresh", ACTIVE, (200, None), NO_SESSION),  # the same session, rotated
    ("refresh", DISABLED, (403, "AccountDisabled"), NO_SESSION),
    ("refresh", UNVERIFIED, (403, "EmailNotVerified"), NO_SESSION),
    ("refresh", SOURCE_LOCKED, (200, None), NO_SESSION),  # locks do not apply to a refresh
    ("refresh", ACCOUNT_LOCKED, (200, None), NO_SESSION),
    ("refresh", MFA_WITHOUT, (200, None), NO_SESSION),
    ("password_change", ACTIVE, (200, None), OK),
    ("password_change", DISABLED, (403, "AccountDisabled"), NO_SESSION),
    ("password_change", UNVERIFIED, (403, "EmailNotVerified"), NO_SESSION),
    ("password_change", SOURCE_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("password_change", ACCOUNT_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("password_change", MFA_WITHOUT, (403, "ReauthenticationRequired"), NO_SESSION),
    ("password_change", MFA_WITH, (200, None), OK),
    ("reauthenticate", ACTIVE, (200, None), NO_SESSION),  # the same session, a fresh auth_time
    ("reauthenticate", DISABLED, (403, "AccountDisabled"), NO_SESSION),
    ("reauthenticate", UNVERIFIED, (403, "EmailNotVerified"), NO_SESSION),
    ("reauthenticate", SOURCE_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("reauthenticate", ACCOUNT_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("reauthenticate", MFA_WITHOUT, (403, "MfaRequired"), NO_SESSION),
    ("reauthenticate", MFA_WITH, (200, None), NO_SESSION),
    # A passkey that verified the user is a complete login, spared every lock; one that did not
    # is a first factor, held to the locks and to the second factor like a password.
    ("passkey login", ACTIVE, (200, None), OK),
    ("passkey login", DISABLED, (403, "AccountDisabled"), NO_SESSION),
    ("passkey login", UNVERIFIED, (403, "EmailNotVerified"), NO_SESSION),
    ("passkey login", SOURCE_LOCKED, (200, None), OK),
    ("passkey login", ACCOUNT_LOCKED, (200, None), OK),
    ("passkey login", MFA_WITHOUT, (200, None), OK),
    ("passkey login no UV", ACTIVE, (200, None), OK),
    ("passkey login no UV", DISABLED, (403, "AccountDisabled"), NO_SESSION),
    ("passkey login no UV", UNVERIFIED, (403, "EmailNotVerified"), NO_SESSION),
    ("passkey login no UV", SOURCE_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("passkey login no UV", ACCOUNT_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("passkey login no UV", MFA_WITHOUT, (403, "MfaRequired"), NO_SESSION),
    ("passkey step-up", ACTIVE, (200, None), NO_SESSION),  # the same session, a fresh auth_time
    ("passkey step-up", DISABLED, (403, "AccountDisabled"), NO_SESSION),
    ("passkey step-up", UNVERIFIED, (403, "EmailNotVerified"), NO_SESSION),
    ("passkey step-up", SOURCE_LOCKED, (200, None), NO_SESSION),
    ("passkey step-up", ACCOUNT_LOCKED, (200, None), NO_SESSION),
    ("passkey step-up", MFA_WITHOUT, (200, None), NO_SESSION),
    ("passkey step-up no UV", ACTIVE, (200, None), NO_SESSION),
    ("passkey step-up no UV", SOURCE_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("passkey step-up no UV", ACCOUNT_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("passkey step-up no UV", MFA_WITHOUT, (403, "MfaRequired"), NO_SESSION),
    ("deletion_cancel", ACTIVE, (200, None), OK),  # the status before comes back, with a new session
    ("deletion_cancel", DISABLED, (403, "AccountDisabled"), NO_SESSION),  # the status before is refused
    ("deletion_cancel", UNVERIFIED, (403, "EmailNotVerified"), NO_SESSION),
    ("deletion_cancel", SOURCE_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("deletion_cancel", ACCOUNT_LOCKED, (423, "AccountLocked"), NO_SESSION),
    ("deletion_cancel", MFA_WITHOUT, (403, "MfaRequired"), NO_SESSION),
    ("deletion_cancel", MFA_WITH, (200, None), OK),
    ("login", PENDING, (403, "AccountPendingDeletion"), NO_SESSION),
    ("mfa_verify", PENDING, (403, "AccountPendingDeletion"), NO_SESSION),
    ("password_reset", PENDING, (403, "AccountPendingDeletion"), NO_SESSION),
    ("refresh", PENDING, (403, "AccountPendingDeletion"), NO_SESSION),
    ("password_change", PENDING, (403, "AccountPendingDeletion"), NO_SESSION),
    ("reauthenticate", PENDING, (403, "AccountPendingDeletion"), NO_SESSION),
    ("passkey login", PENDING, (403, "AccountPendingDeletion"), NO_SESSION),  # no lock spares it, no status
    ("passkey login no UV", PENDING, (403, "AccountPendingDeletion"), NO_SESSION),
    ("passkey step-up", PENDING, (403, "AccountPendingDeletion"), NO_SESSION),
]


@pytest.mark.parametrize(
    ("flow", "state", "answer", "new_session"), MATRIX, ids=[f"{flow}-{state}" for flow, state, _, _ in MATRIX]
)
async def test_every_flow_in_every_account_state_meets_the_one_gate(
    app, client, strict_app, pg, flow, state, answer, new_session
):
    case = await _arrange(client, pg, app, state, flow)
    user_id = case.account.id
    before = await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user_id)
    async with client_for(strict_app if state == UNVERIFIED else app) as caller:
        response = await _run(caller, flow, case, with_code=state == MFA_WITH)
    body = response.json()
    assert (response.status_code, body.get("error")) == answer, response.text
    if flow == "register":
        user_id = body["user"]["id"]
        before = 0
    after = await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user_id)
    assert (after > before) is new_session
    issued = "access_token" in body
    assert issued is (response.status_code in (200, 201) and not (flow == "register" and state == UNVERIFIED))
    if issued:
        me = await client.get(f"{API}/me", headers=bearer(body["access_token"]))
        assert me.status_code == 200, me.text
