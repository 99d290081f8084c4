"""Email verification: the link mailed at registration, resend, and REQUIRE_VERIFIED_EMAIL."""

from __future__ import annotations

import hashlib

from manas360.settings import load_settings
from tests.auth.mfa_helpers import enable
from tests.fixtures.accounts import API, PASSWORD, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.smtp import token_in
from tests.mail.conftest import mail_environ

VERIFY, RESEND = f"{API}/auth/verify-email", f"{API}/auth/verify-email/resend"


def _verification_mails(smtp, email: str):
    return [m for m in smtp.inbox.to(email) if m["Subject"] == "Confirm your email address"]


async def test_the_registration_link_verifies_the_address_once(mail_client, smtp, pg):
    account = await register(mail_client)
    assert account.pair["user"]["email_verified"] is False
    (message,) = await smtp.wait_for(account.email)
    token = token_in(message)
    assert await pg.fetchval("SELECT count(*) FROM account_tokens WHERE token_hash = $1 AND user_id = $2",
                             hashlib.sha256(token.encode()).hexdigest(), account.id) == 1
    response = await mail_client.post(VERIFY, json={"token": token})
    assert response.status_code == 200, response.text
    user = response.json()
    assert (user["id"], user["email_verified"]) == (account.id, True)
    assert set(user) == {"id", "email", "display_name", "role", "privilege_level", "plan", "created_at", "status",
                         "email_verified", "mfa_enabled"}
    me = await mail_client.get(f"{API}/me", headers=account.headers)
    assert me.json()["email_verified"] is True
    again = await mail_client.post(VERIFY, json={"token": token})
    assert (again.status_code, again.json()["error"]) == (401, "InvalidToken")
    actions = [r["action"] for r in await pg.fetch(
        "SELECT action FROM audit_logs WHERE target_user_id = $1 ORDER BY id", account.id)]
    assert actions == ["auth.register", "auth.email_verification_sent", "auth.email_verified"]


async def test_an_expired_or_unknown_verification_token_is_invalid(mail_client, smtp, pg):
    account = await register(mail_client)
    token = token_in((await smtp.wait_for(account.email))[0])
    await pg.execute("UPDATE account_tokens SET expires_at = now() WHERE user_id = $1", account.id)
    for candidate in (token, "no-such-token"):
        response = await mail_client.post(VERIFY, json={"token": candidate})
        assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")
    assert (await mail_client.post(VERIFY, json={})).status_code == 422


async def test_resend_voids_the_older_link_and_mails_a_new_one(mail_client, smtp):
    account = await register(mail_client)
    first = token_in((await smtp.wait_for(account.email))[0])
    response = await mail_client.post(RESEND, headers=account.headers)
    assert (response.status_code, response.json()) == (202, {})
    second = token_in((await smtp.wait_for(account.email, count=2))[1])
    assert first != second
    assert (await mail_client.post(VERIFY, json={"token": first})).json()["error"] == "InvalidToken"
    assert (await mail_client.post(VERIFY, json={"token": second})).json()["email_verified"] is True


async def test_resend_for_a_verified_address_sends_nothing(mail_client, smtp, pg):
    account = await register(mail_client)
    token = token_in((await smtp.wait_for(account.email))[0])
    assert (await mail_client.post(VERIFY, json={"token": token})).status_code == 200
    response = await mail_client.post(RESEND, headers=account.headers)
    assert (response.status_code, response.json()) == (202, {})
    assert await pg.fetchval("SELECT count(*) FROM mail_outbox WHERE recipient = $1", account.email) == 1


async def test_resend_needs_a_bearer_token(mail_client):
    response = await mail_client.post(RESEND)
    assert (response.status_code, response.json()["error"]) == (401, "Unauthorized")


async def test_with_verified_email_required_an_unverified_login_gets_no_tokens(environ, smtp, database, redis_raw,
                                                                              pg):
    settings = load_settings(mail_environ(environ, smtp, REQUIRE_VERIFIED_EMAIL="true"))
    async with running_app(settings) as app, client_for(app) as client:
        account = await register(client)  # registration itself still answers with a pair
        login = {"email": account.email, "password": PASSWORD}
        refused = await client.post(f"{API}/auth/login", json=login)
        assert (refused.status_code, refused.json()["error"]) == (403, "EmailNotVerified")
        assert set(refused.json()) == {"error", "message", "request_id"}
        wrong = await client.post(f"{API}/auth/login", json={**login, "password": "wrong password"})
        assert (wrong.status_code, wrong.json()["error"]) == (401, "InvalidCredentials")
        assert await pg.fetchval("SELECT reason FROM login_attempts WHERE user_id = $1 AND success = false "
                                 "ORDER BY id LIMIT 1", account.id) == "unverified"
        sessions = await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id)
        token = token_in((await smtp.wait_for(account.email))[0])
        assert (await client.post(VERIFY, json={"token": token})).status_code == 200
        allowed = await client.post(f"{API}/auth/login", json=login)
        assert allowed.status_code == 200
        assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id) == sessions + 1


async def test_an_unverified_address_gets_no_mfa_token_either(environ, smtp, database, redis_raw, pg):
    settings = load_settings(mail_environ(environ, smtp, REQUIRE_VERIFIED_EMAIL="1"))
    async with running_app(settings) as app, client_for(app) as client:
        account = await register(client)
        await enable(client, account)
        login = {"email": account.email, "password": PASSWORD}
        refused = await client.post(f"{API}/auth/login", json=login)
        assert (refused.status_code, refused.json()["error"]) == (403, "EmailNotVerified")
        assert "mfa_token" not in refused.json()
        token = token_in((await smtp.wait_for(account.email))[0])
        assert (await client.post(VERIFY, json={"token": token})).status_code == 200
        challenged = await client.post(f"{API}/auth/login", json=login)
        assert (challenged.status_code, challenged.json()["error"]) == (403, "MfaRequired")
        assert challenged.json()["mfa_token"]
