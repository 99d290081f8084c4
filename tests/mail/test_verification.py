"""Email verification: the link mailed at registration, resend (signed in, or by address),
the first proof of the mailbox ending any pre-hijacking, and REQUIRE_VERIFIED_EMAIL on every
path into a session."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from manas360.settings import load_settings
from tests.auth.mfa_helpers import enable
from tests.fixtures.accounts import API, PASSWORD, Account, login, register, unique_email
from tests.fixtures.app import client_for, running_app
from tests.fixtures.gates import eventually
from tests.fixtures.smtp import token_in
from tests.mail.conftest import mail_environ

VERIFY, RESEND = f"{API}/auth/verify-email", f"{API}/auth/verify-email/resend"
SUBJECT = "Confirm your email address"


def _verification_mails(smtp, email: str):
    return [m for m in smtp.inbox.to(email) if m["Subject"] == SUBJECT]


async def _queued(pg, email: str) -> int:
    return await pg.fetchval("SELECT count(*) FROM outbox WHERE recipient = $1 AND kind = 'email_verification'", email)


async def test_the_registration_link_verifies_the_address_once(mail_client, smtp, pg):
    account = await register(mail_client)
    assert account.pair["user"]["email_verified"] is False
    (message,) = await smtp.wait_for(account.email)
    token = token_in(message)
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM account_tokens WHERE token_hash = $1 AND user_id = $2",
            hashlib.sha256(token.encode()).hexdigest(),
            account.id,
        )
        == 1
    )
    assert (await mail_client.get(f"{API}/me", headers=account.headers)).status_code == 200  # a warm cache
    response = await mail_client.post(VERIFY, json={"token": token})
    assert response.status_code == 200, response.text
    user = response.json()
    assert (user["id"], user["email_verified"]) == (account.id, True)
    assert set(user) == {
        "id",
        "email",
        "display_name",
        "role",
        "privilege_level",
        "plan",
        "created_at",
        "status",
        "email_verified",
        "mfa_enabled",
    }
    # The first proof of the mailbox ends every session made before it (pre-hijacking).
    me = await mail_client.get(f"{API}/me", headers=account.headers)
    assert (me.status_code, me.json()["error"]) == (401, "TokenRevoked")
    assert (await login(mail_client, account)).pair["user"]["email_verified"] is True
    again = await mail_client.post(VERIFY, json={"token": token})
    assert (again.status_code, again.json()["error"]) == (401, "InvalidToken")
    actions = [
        r["action"]
        for r in await pg.fetch("SELECT action FROM audit_logs WHERE target_user_id = $1 ORDER BY id", account.id)
    ]
    assert actions == ["auth.register", "auth.email_verification_sent", "auth.email_verified", "auth.login"]


async def test_an_expired_or_unknown_verification_token_is_invalid(mail_client, smtp, pg):
    account = await register(mail_client)
    token = token_in((await smtp.wait_for(account.email))[0])
    await pg.execute("UPDATE account_tokens SET expires_at = now() WHERE user_id = $1", account.id)
    for candidate in (token, "no-such-token"):
        response = await mail_client.post(VERIFY, json={"token": candidate})
        assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")
    assert (await mail_client.post(VERIFY, json={})).status_code == 422


async def test_a_newer_link_does_not_void_the_older_ones_and_using_one_voids_the_rest(mail_client, smtp):
    """Anyone may ask for a link to an address: a request must never kill the owner's."""
    account = await register(mail_client)
    first = token_in((await smtp.wait_for(account.email))[0])
    response = await mail_client.post(RESEND, headers=account.headers)
    assert (response.status_code, response.json()) == (202, {})
    second = token_in((await smtp.wait_for(account.email, count=2))[1])
    assert first != second
    assert (await mail_client.post(VERIFY, json={"token": first})).json()["email_verified"] is True
    assert (await mail_client.post(VERIFY, json={"token": second})).json()["error"] == "InvalidToken"


async def test_resend_for_a_verified_address_sends_nothing(mail_client, smtp, pg):
    account = await register(mail_client)
    token = token_in((await smtp.wait_for(account.email))[0])
    assert (await mail_client.post(VERIFY, json={"token": token})).status_code == 200
    signed_in = await login(mail_client, account)
    response = await mail_client.post(RESEND, headers=signed_in.headers)
    assert (response.status_code, response.json()) == (202, {})
    by_address = await mail_client.post(RESEND, json={"email": account.email})
    assert (by_address.status_code, by_address.json()) == (202, {})
    assert await _queued(pg, account.email) == 1


async def test_resend_by_address_answers_the_same_for_anyone_and_mails_only_the_unverified(mail_client, smtp, pg):
    unverified = await register(mail_client)
    await smtp.wait_for(unverified.email)
    answers = []
    for email in (unverified.email, unique_email("nobody"), unverified.email.upper()):
        response = await mail_client.post(RESEND, json={"email": email})
        answers.append((response.status_code, response.json()))
    assert answers == [(202, {})] * 3
    mails = await smtp.wait_for(unverified.email, count=3)
    assert len(mails) == 3 and await _queued(pg, unverified.email) == 3
    # A malformed address is refused as such, which says nothing about who exists.
    malformed = await mail_client.post(RESEND, json={"email": "not-an-email"})
    assert (malformed.status_code, malformed.json()["error"]) == (422, "ValidationError")


async def test_without_a_bearer_token_resend_needs_an_address(mail_client):
    response = await mail_client.post(RESEND)
    assert (response.status_code, response.json()["error"]) == (400, "BadRequest")
    garbled = await mail_client.post(RESEND, headers={"authorization": "Bearer nonsense"}, json={"email": "a@b.cd"})
    assert (garbled.status_code, garbled.json()["error"]) == (401, "InvalidToken")


async def test_at_most_the_hourly_allowance_of_verification_mails_goes_to_an_account(mail_client, smtp, pg):
    account = await register(mail_client)  # the first mail
    answers = [await mail_client.post(RESEND, json={"email": account.email}) for _ in range(4)]
    assert [a.status_code for a in answers] == [202] * 4
    assert await _queued(pg, account.email) == 3  # MAIL_PER_ACCOUNT_HOURLY
    live = await pg.fetchval(
        "SELECT count(*) FROM account_tokens WHERE user_id = $1 AND used_at IS NULL AND purpose = 'email_verification'",
        account.id,
    )
    assert live == 3


async def test_the_first_proof_of_the_mailbox_removes_factors_and_sessions_made_before_it(mail_client, smtp, pg):
    """Pre-hijacking: someone registers the victim's address and arms the account (a TOTP of
    their own, a session); the victim proves the mailbox and owns a clean account."""
    squatter = await register(mail_client)
    first = token_in((await smtp.wait_for(squatter.email))[0])
    await enable(mail_client, squatter)  # a security event: the link in the owner's mailbox is void
    assert (await mail_client.post(VERIFY, json={"token": first})).json()["error"] == "InvalidToken"
    assert (await mail_client.post(RESEND, json={"email": squatter.email})).status_code == 202  # the owner asks
    await eventually(lambda: len(_verification_mails(smtp, squatter.email)) == 2, what="the second link")
    token = token_in(_verification_mails(smtp, squatter.email)[1])
    verified = await mail_client.post(VERIFY, json={"token": token})  # and clicks
    assert verified.status_code == 200 and verified.json()["mfa_enabled"] is False
    me = await mail_client.get(f"{API}/me", headers=squatter.headers)
    assert (me.status_code, me.json()["error"]) == (401, "TokenRevoked")
    assert (
        await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", squatter.id) == 0
    )
    assert await pg.fetchval("SELECT count(*) FROM mfa_totp WHERE user_id = $1", squatter.id) == 0
    assert await pg.fetchval("SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1", squatter.id) == 0


# -- REQUIRE_VERIFIED_EMAIL: no unverified account holds a session --------------------------------


@pytest.fixture(scope="module")
async def strict_app(environ, smtp, database, redis_raw):
    settings = load_settings(mail_environ(environ, smtp, REQUIRE_VERIFIED_EMAIL="true"))
    async with running_app(settings) as app:
        yield app


@pytest.fixture
async def strict(strict_app):
    async with client_for(strict_app) as client:
        yield client


async def _register_unverified(client) -> Account:
    email = unique_email()
    response = await client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return Account(email=email, password=PASSWORD, pair=response.json())


async def test_register_answers_without_tokens_when_verification_is_required(strict, pg):
    account = await _register_unverified(strict)
    body = account.pair
    assert set(body) == {"user", "verification_required"} and body["verification_required"] is True
    assert body["user"]["email"] == account.email and body["user"]["email_verified"] is False
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", body["user"]["id"]) == 0


async def test_with_verified_email_required_an_unverified_login_gets_no_tokens(strict, smtp, pg):
    account = await _register_unverified(strict)
    user_id = account.pair["user"]["id"]
    credentials = {"email": account.email, "password": PASSWORD}
    refused = await strict.post(f"{API}/auth/login", json=credentials)
    assert (refused.status_code, refused.json()["error"]) == (403, "EmailNotVerified")
    assert set(refused.json()) == {"error", "message", "request_id"}
    wrong = await strict.post(f"{API}/auth/login", json={**credentials, "password": "wrong password"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "InvalidCredentials")
    assert (
        await pg.fetchval(
            "SELECT reason FROM login_attempts WHERE user_id = $1 AND success = false ORDER BY id LIMIT 1", user_id
        )
        == "unverified"
    )
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user_id) == 0
    resent = await strict.post(RESEND, json={"email": account.email})  # no session: by address
    assert resent.status_code == 202
    token = token_in((await smtp.wait_for(account.email, count=2))[1])
    assert (await strict.post(VERIFY, json={"token": token})).status_code == 200
    allowed = await strict.post(f"{API}/auth/login", json=credentials)
    assert allowed.status_code == 200
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user_id) == 1


async def test_with_verified_email_required_an_older_session_of_an_unverified_account_cannot_refresh(
    strict, client, pg
):
    """A session made before the setting was switched on (here: on the run's other app) is
    not extended: the refresh answers 403 EmailNotVerified."""
    account = await register(client)
    refused = await strict.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    assert (refused.status_code, refused.json()["error"]) == (403, "EmailNotVerified")
    assert "access_token" not in refused.json()


async def test_concurrent_verifications_of_one_link_verify_once(mail_client, smtp, pg):
    account = await register(mail_client)
    token = token_in((await smtp.wait_for(account.email))[0])
    answers = await asyncio.gather(*[mail_client.post(VERIFY, json={"token": token}) for _ in range(4)])
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401]
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.email_verified'", account.id
        )
        == 1
    )
