"""POST /auth/password-reset and /auth/password-reset/confirm, with the mail read from a
real SMTP server."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from manas360.services import recovery
from tests.fixtures.accounts import API, PASSWORD, bearer, login, register, unique_email
from tests.fixtures.gates import Gate, eventually
from tests.fixtures.smtp import body_of, token_in
from tests.mail.conftest import PUBLIC_BASE_URL

REQUEST, CONFIRM = f"{API}/auth/password-reset", f"{API}/auth/password-reset/confirm"
NEW_PASSWORD = "a brand new passphrase"


async def _reset_token(client, smtp, email: str, *, nth: int = 1) -> str:
    response = await client.post(REQUEST, json={"email": email})
    assert (response.status_code, response.json()) == (202, {})
    messages = [m for m in await smtp.wait_for(email, count=nth + 1) if m["Subject"].startswith("Reset")]
    assert len(messages) == nth
    return token_in(messages[-1])


async def _confirm(client, token: str, password: str = NEW_PASSWORD):
    return await client.post(CONFIRM, json={"token": token, "new_password": password})


async def test_reset_mail_carries_a_single_use_link_that_sets_the_password(mail_client, smtp, pg):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    message = [m for m in smtp.inbox.to(account.email) if m["Subject"] == "Reset your MANAS360 password"][0]
    assert f"{PUBLIC_BASE_URL}/reset-password?token={token}" in body_of(message)
    stored = await pg.fetchrow("SELECT token_hash, expires_at - created_at AS ttl FROM account_tokens "
                               "WHERE user_id = $1 AND purpose = 'password_reset'", account.id)
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()  # only the hash is stored
    assert abs(stored["ttl"].total_seconds() - 1800) < 5

    confirmed = await _confirm(mail_client, token)
    assert confirmed.status_code == 200, confirmed.text
    pair = confirmed.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert pair["user"]["id"] == account.id
    assert (await mail_client.get(f"{API}/me", headers=bearer(pair["access_token"]))).status_code == 200
    again = await _confirm(mail_client, token, "yet another passphrase")
    assert (again.status_code, again.json()["error"]) == (401, "InvalidToken")

    old = await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    assert old.status_code == 401
    new = await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": NEW_PASSWORD})
    assert new.status_code == 200


async def test_confirming_revokes_every_session_and_lifts_the_lock(mail_client, smtp, pg):
    account = await register(mail_client)
    other = await login(mail_client, account)
    for _ in range(5):
        await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": "wrong password"})
    locked = await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    assert locked.status_code == 423
    assert await pg.fetchval("SELECT locked_until IS NOT NULL FROM user_accounts WHERE id = $1", account.id)

    token = await _reset_token(mail_client, smtp, account.email)
    assert (await _confirm(mail_client, token)).status_code == 200
    for old in (account, other):
        me = await mail_client.get(f"{API}/me", headers=old.headers)
        assert (me.status_code, me.json()["error"]) == (401, "TokenRevoked")
        refreshed = await mail_client.post(f"{API}/auth/refresh", json={"refresh_token": old.refresh_token})
        assert refreshed.status_code == 401
    assert await pg.fetchval("SELECT locked_until FROM user_accounts WHERE id = $1", account.id) is None
    after = await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": NEW_PASSWORD})
    assert after.status_code == 200  # the Redis lock and failure count are gone too
    actions = [r["action"] for r in await pg.fetch(
        "SELECT action FROM audit_logs WHERE target_user_id = $1 ORDER BY id", account.id)]
    assert "auth.password_reset_requested" in actions and "auth.password_reset" in actions


async def test_requesting_a_reset_changes_nothing_else(mail_client, smtp, pg):
    account = await register(mail_client)
    before = await pg.fetchrow("SELECT password_hash, updated_at, locked_until, tokens_valid_after "
                               "FROM user_accounts WHERE id = $1", account.id)
    await _reset_token(mail_client, smtp, account.email)
    after = await pg.fetchrow("SELECT password_hash, updated_at, locked_until, tokens_valid_after "
                              "FROM user_accounts WHERE id = $1", account.id)
    assert before == after
    assert (await mail_client.get(f"{API}/me", headers=account.headers)).status_code == 200
    await login(mail_client, account)  # the old password still works


async def test_a_newer_request_voids_the_older_token(mail_client, smtp):
    account = await register(mail_client)
    first = await _reset_token(mail_client, smtp, account.email)
    second = await _reset_token(mail_client, smtp, account.email, nth=2)
    assert first != second
    assert (await _confirm(mail_client, first)).json()["error"] == "InvalidToken"
    assert (await _confirm(mail_client, second)).status_code == 200


async def test_an_expired_token_is_refused(mail_client, smtp, pg):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    await pg.execute("UPDATE account_tokens SET expires_at = now() - interval '1 second' "
                     "WHERE user_id = $1 AND purpose = 'password_reset'", account.id)
    response = await _confirm(mail_client, token)
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")
    await login(mail_client, account)


@pytest.mark.parametrize("token", ["unknown", "x" * 43, "a" * 512])
async def test_unknown_tokens_are_invalid(mail_client, token):
    response = await _confirm(mail_client, token)
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")


@pytest.mark.parametrize("body", [{}, {"email": ""}, {"email": "a@b.c", "role": "admin"},
                                  {"token": "t", "new_password": "short"}])
async def test_bad_bodies_are_422(mail_client, body):
    url = CONFIRM if "token" in body else REQUEST
    response = await mail_client.post(url, json=body)
    assert (response.status_code, response.json()["error"]) == (422, "ValidationError")


async def test_concurrent_confirms_of_one_token_exactly_one_wins(mail_client, smtp, pg):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    answers = await asyncio.gather(*(_confirm(mail_client, token, f"passphrase number {n}") for n in range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [401] * 5, [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200)
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
                             account.id) == 1
    password = f"passphrase number {answers.index(winner)}"
    ok = await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": password})
    assert ok.status_code == 200


async def test_an_unknown_or_disabled_address_gets_the_same_answer_and_no_mail(mail_client, client, smtp, pg,
                                                                               superadmin_headers):
    ghost = unique_email("ghost")
    response = await mail_client.post(REQUEST, json={"email": ghost})
    assert (response.status_code, response.json()) == (202, {})
    account = await register(mail_client)
    disabled = await client.put(f"{API}/admin/users/{account.id}/status", headers=superadmin_headers,
                                json={"status": "disabled"})
    assert disabled.status_code == 200
    response = await mail_client.post(REQUEST, json={"email": account.email.upper()})
    assert (response.status_code, response.json()) == (202, {})
    # A mail queued after ours would be delivered after it: wait for one, then look.
    marker = await register(mail_client)
    await smtp.wait_for(marker.email)
    await eventually(lambda: pg.fetchval("SELECT count(*) = 0 FROM mail_outbox WHERE sent_at IS NULL "
                                         "AND next_attempt_at <= now()"), what="the outbox drained")
    assert smtp.inbox.to(ghost) == []
    assert [m["Subject"] for m in smtp.inbox.to(account.email)] == ["Confirm your email address"]
    assert await pg.fetchval("SELECT count(*) FROM account_tokens WHERE user_id = $1 AND purpose = 'password_reset'",
                             account.id) == 0


async def test_disabling_an_account_voids_its_reset_and_verification_tokens(mail_client, client, smtp, pg,
                                                                            superadmin_headers):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    verification = token_in([m for m in smtp.inbox.to(account.email) if m["Subject"].startswith("Confirm")][0])
    assert (await client.put(f"{API}/admin/users/{account.id}/status", headers=superadmin_headers,
                             json={"status": "disabled"})).status_code == 200
    assert await pg.fetchval("SELECT count(*) FROM account_tokens WHERE user_id = $1 AND used_at IS NULL",
                             account.id) == 0
    assert (await client.put(f"{API}/admin/users/{account.id}/status", headers=superadmin_headers,
                             json={"status": "active"})).status_code == 200
    assert (await _confirm(mail_client, token)).json()["error"] == "InvalidToken"
    verified = await mail_client.post(f"{API}/auth/verify-email", json={"token": verification})
    assert verified.json()["error"] == "InvalidToken"


async def test_a_confirm_overtaken_by_disabling_the_account_is_refused(mail_client, client, smtp, pg,
                                                                       superadmin_headers, monkeypatch):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    bcrypt = Gate(recovery.hash_password)
    monkeypatch.setattr(recovery, "hash_password", bcrypt)
    confirming = asyncio.create_task(_confirm(mail_client, token))
    await eventually(lambda: bcrypt.held == 1, what="the confirm at bcrypt (its token checked)")
    disabled = await client.put(f"{API}/admin/users/{account.id}/status", headers=superadmin_headers,
                                json={"status": "disabled"})
    assert disabled.status_code == 200
    bcrypt.open()
    response = await confirming
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")
    old = await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoke_reason = 'password_reset'",
                            account.id)
    assert old == 0
