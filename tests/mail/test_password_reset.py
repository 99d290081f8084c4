"""POST /auth/password-reset and /auth/password-reset/confirm, with the mail read from a
real SMTP server."""

from __future__ import annotations

import asyncio
import hashlib

import jwt
import pytest

from manas360.services.auth import reset as recovery
from tests.fixtures.accounts import API, PASSWORD, bearer, login, register, unique_email
from tests.fixtures.gates import Gate, eventually
from tests.fixtures.smtp import body_of, token_in
from tests.mail.conftest import PUBLIC_BASE_URL

REQUEST, CONFIRM = f"{API}/auth/password-reset", f"{API}/auth/password-reset/confirm"
NEW_PASSWORD = "a brand new passphrase"


def _resets(smtp, email: str):
    return [m for m in smtp.inbox.to(email) if m["Subject"].startswith("Reset")]


async def _reset_token(client, smtp, email: str, *, nth: int = 1) -> str:
    """Ask for a reset link; the token of the `nth` reset mail to the address."""
    response = await client.post(REQUEST, json={"email": email})
    assert (response.status_code, response.json()) == (202, {})
    await eventually(lambda: len(_resets(smtp, email)) >= nth, what=f"reset mail #{nth}")
    messages = _resets(smtp, email)
    assert len(messages) == nth
    return token_in(messages[-1])


async def _confirm(client, token: str, password: str = NEW_PASSWORD):
    return await client.post(CONFIRM, json={"token": token, "new_password": password})


async def test_reset_mail_carries_a_single_use_link_that_sets_the_password(mail_client, smtp, pg):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    message = [m for m in smtp.inbox.to(account.email) if m["Subject"] == "Reset your MANAS360 password"][0]
    assert f"{PUBLIC_BASE_URL}/reset-password#token={token}" in body_of(message)
    stored = await pg.fetchrow(
        "SELECT token_hash, expires_at - created_at AS ttl FROM account_tokens "
        "WHERE user_id = $1 AND purpose = 'password_reset'",
        account.id,
    )
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
    assert await pg.fetchval("SELECT count(*) FROM account_source_locks WHERE user_id = $1", account.id) == 1

    token = await _reset_token(mail_client, smtp, account.email)
    for old in (account, other):  # a warm cache: Redis must hear of the revocation, not only PostgreSQL
        assert (await mail_client.get(f"{API}/me", headers=old.headers)).status_code == 200
    assert (await _confirm(mail_client, token)).status_code == 200
    for old in (account, other):
        me = await mail_client.get(f"{API}/me", headers=old.headers)
        assert (me.status_code, me.json()["error"]) == (401, "TokenRevoked")
        refreshed = await mail_client.post(f"{API}/auth/refresh", json={"refresh_token": old.refresh_token})
        assert refreshed.status_code == 401
    assert await pg.fetchval("SELECT count(*) FROM account_source_locks WHERE user_id = $1", account.id) == 0
    after = await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": NEW_PASSWORD})
    assert after.status_code == 200  # the Redis lock and failure count are gone too
    actions = [
        r["action"]
        for r in await pg.fetch("SELECT action FROM audit_logs WHERE target_user_id = $1 ORDER BY id", account.id)
    ]
    assert "auth.password_reset_requested" in actions and "auth.password_reset" in actions


async def test_requesting_a_reset_changes_nothing_else(mail_client, smtp, pg):
    account = await register(mail_client)
    before = await pg.fetchrow(
        "SELECT password_hash, updated_at, locked_until, tokens_valid_after FROM user_accounts WHERE id = $1",
        account.id,
    )
    await _reset_token(mail_client, smtp, account.email)
    after = await pg.fetchrow(
        "SELECT password_hash, updated_at, locked_until, tokens_valid_after FROM user_accounts WHERE id = $1",
        account.id,
    )
    assert before == after
    assert (await mail_client.get(f"{API}/me", headers=account.headers)).status_code == 200
    await login(mail_client, account)  # the old password still works


async def test_a_newer_request_never_voids_a_live_link_but_a_fourth_drops_the_oldest(mail_client, smtp, pg):
    """Anyone may ask for a reset of any address: that must not kill the owner's link. Up to
    three are live; using one voids the others."""
    account = await register(mail_client)
    links = [await _reset_token(mail_client, smtp, account.email, nth=n) for n in (1, 2, 3)]
    assert len(set(links)) == 3
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM account_tokens WHERE user_id = $1 AND purpose = 'password_reset' AND used_at IS NULL",
            account.id,
        )
        == 3
    )
    await pg.execute("DELETE FROM outbox WHERE user_id = $1", account.id)  # past the hourly allowance
    fourth = await _reset_token(mail_client, smtp, account.email, nth=4)
    assert (await _confirm(mail_client, links[0])).json()["error"] == "InvalidToken"  # the oldest dropped
    assert (await _confirm(mail_client, links[2])).status_code == 200
    for other in (links[1], fourth):
        assert (await _confirm(mail_client, other, "yet another passphrase")).json()["error"] == "InvalidToken"


async def test_beyond_the_hourly_allowance_the_answer_is_the_same_and_nothing_is_sent(mail_client, smtp, pg):
    account = await register(mail_client)
    for n in (1, 2, 3):
        await _reset_token(mail_client, smtp, account.email, nth=n)
    response = await mail_client.post(REQUEST, json={"email": account.email})
    assert (response.status_code, response.json()) == (202, {})
    assert (
        await pg.fetchval("SELECT count(*) FROM outbox WHERE user_id = $1 AND kind = 'password_reset'", account.id) == 3
    )
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM account_tokens WHERE user_id = $1 AND purpose = 'password_reset'", account.id
        )
        == 3
    )


async def test_a_malformed_address_is_422_not_202(mail_client):
    response = await mail_client.post(REQUEST, json={"email": "not-an-email"})
    assert (response.status_code, response.json()["error"]) == (422, "ValidationError")
    assert set(response.json()["fields"]) == {"email"}


async def test_an_expired_token_is_refused(mail_client, smtp, pg):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    await pg.execute(
        "UPDATE account_tokens SET expires_at = now() - interval '1 second' "
        "WHERE user_id = $1 AND purpose = 'password_reset'",
        account.id,
    )
    response = await _confirm(mail_client, token)
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")
    await login(mail_client, account)


@pytest.mark.parametrize("token", ["unknown", "x" * 43, "a" * 512])
async def test_unknown_tokens_are_invalid(mail_client, token):
    response = await _confirm(mail_client, token)
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")


@pytest.mark.parametrize(
    "body", [{}, {"email": ""}, {"email": "a@b.c", "role": "admin"}, {"token": "t", "new_password": "short"}]
)
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
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", account.id) == 1
    password = f"passphrase number {answers.index(winner)}"
    ok = await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": password})
    assert ok.status_code == 200


async def test_an_unknown_or_disabled_address_gets_the_same_answer_and_no_mail(
    mail_client, client, smtp, pg, superadmin_headers
):
    ghost = unique_email("ghost")
    response = await mail_client.post(REQUEST, json={"email": ghost})
    assert (response.status_code, response.json()) == (202, {})
    account = await register(mail_client)
    disabled = await client.put(
        f"{API}/admin/users/{account.id}/status", headers=superadmin_headers, json={"status": "disabled"}
    )
    assert disabled.status_code == 200
    response = await mail_client.post(REQUEST, json={"email": account.email.upper()})
    assert (response.status_code, response.json()) == (202, {})
    # A mail queued after ours would be delivered after it: wait for one, then look.
    marker = await register(mail_client)
    await smtp.wait_for(marker.email)
    await eventually(
        lambda: pg.fetchval("SELECT count(*) = 0 FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= now()"),
        what="the outbox drained",
    )
    assert smtp.inbox.to(ghost) == []
    assert [m["Subject"] for m in smtp.inbox.to(account.email)] == ["Confirm your email address"]
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM account_tokens WHERE user_id = $1 AND purpose = 'password_reset'", account.id
        )
        == 0
    )


async def test_disabling_an_account_voids_its_reset_and_verification_tokens(
    mail_client, client, smtp, pg, superadmin_headers
):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    verification = token_in([m for m in smtp.inbox.to(account.email) if m["Subject"].startswith("Confirm")][0])
    assert (
        await client.put(
            f"{API}/admin/users/{account.id}/status", headers=superadmin_headers, json={"status": "disabled"}
        )
    ).status_code == 200
    assert (
        await client.put(
            f"{API}/admin/users/{account.id}/status", headers=superadmin_headers, json={"status": "active"}
        )
    ).status_code == 200
    assert (await _confirm(mail_client, token)).json()["error"] == "InvalidToken"
    verified = await mail_client.post(f"{API}/auth/verify-email", json={"token": verification})
    assert verified.json()["error"] == "InvalidToken"


async def test_a_confirm_overtaken_by_disabling_the_account_is_refused(
    mail_client, client, smtp, pg, superadmin_headers, monkeypatch
):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    bcrypt = Gate(recovery.hash_password)
    monkeypatch.setattr(recovery, "hash_password", bcrypt)
    confirming = asyncio.create_task(_confirm(mail_client, token))
    await eventually(lambda: bcrypt.held == 1, what="the confirm at bcrypt (its token checked)")
    disabled = await client.put(
        f"{API}/admin/users/{account.id}/status", headers=superadmin_headers, json={"status": "disabled"}
    )
    assert disabled.status_code == 200
    bcrypt.open()
    response = await confirming
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")
    old = await pg.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoke_reason = 'password_reset'", account.id
    )
    assert old == 0


# -- a reset link proves the mailbox, never a second factor ------------------------------------


async def _verified_with_mfa(client, pg, smtp):
    from tests.auth.mfa_helpers import enable

    account = await register(client)
    await pg.execute("UPDATE user_accounts SET email_verified_at = now() WHERE id = $1", account.id)
    return account, await enable(client, account)


async def test_with_mfa_on_a_reset_link_alone_changes_nothing_and_a_code_completes_it(mail_client, smtp, pg):
    account, enabled = await _verified_with_mfa(mail_client, pg, smtp)
    token = await _reset_token(mail_client, smtp, account.email, nth=1)
    without = await _confirm(mail_client, token)
    assert (without.status_code, without.json()["error"]) == (403, "MfaRequired")
    assert "mfa_token" not in without.json() and "access_token" not in without.json()
    wrong = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD, "code": "000000"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "InvalidCredentials")
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.mfa_failed'", account.id
        )
        == 1
    )  # counted
    old = await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    assert old.json()["error"] == "MfaRequired"  # nothing changed: the old password is still right ...
    assert (await mail_client.get(f"{API}/me", headers=account.headers)).status_code == 200  # ... and sessions
    done = await mail_client.post(
        CONFIRM, json={"token": token, "new_password": NEW_PASSWORD, "code": enabled.code()}
    )  # the link stayed usable
    assert done.status_code == 200, done.text
    assert done.json()["user"]["mfa_enabled"] is True
    claims = jwt.decode(done.json()["access_token"], options={"verify_signature": False})
    assert (claims["amr"], claims["aal"]) == (["email", "otp"], 1)


async def test_a_recovery_code_completes_a_reset_too(mail_client, smtp, pg):
    account, enabled = await _verified_with_mfa(mail_client, pg, smtp)
    token = await _reset_token(mail_client, smtp, account.email, nth=1)
    done = await mail_client.post(
        CONFIRM, json={"token": token, "new_password": NEW_PASSWORD, "code": enabled.recovery_codes[0]}
    )
    assert done.status_code == 200, done.text


async def test_with_mfa_on_a_locked_source_cannot_reset_and_nothing_changes(mail_client, smtp, pg):
    account, enabled = await _verified_with_mfa(mail_client, pg, smtp)
    for _ in range(5):
        await mail_client.post(f"{API}/auth/login", json={"email": account.email, "password": "wrong password"})
    token = await _reset_token(mail_client, smtp, account.email, nth=1)
    locked = await mail_client.post(
        CONFIRM, json={"token": token, "new_password": NEW_PASSWORD, "code": enabled.code()}
    )
    assert (locked.status_code, locked.json()["error"]) == (423, "AccountLocked")
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM account_tokens WHERE user_id = $1 AND used_at IS NULL AND purpose = 'password_reset'",
            account.id,
        )
        == 1
    )


async def test_on_an_address_never_verified_a_reset_is_the_first_proof_and_removes_the_totp(mail_client, smtp, pg):
    """Pre-hijacking: the TOTP was set up before anyone proved the address; the mailbox's owner
    resets without it and the squatter's factor is gone."""
    from tests.auth.mfa_helpers import enable

    account = await register(mail_client)
    await enable(mail_client, account)
    token = await _reset_token(mail_client, smtp, account.email, nth=1)
    done = await _confirm(mail_client, token)
    assert done.status_code == 200, done.text
    assert (done.json()["user"]["mfa_enabled"], done.json()["user"]["email_verified"]) == (False, True)
    assert await pg.fetchval("SELECT count(*) FROM mfa_totp WHERE user_id = $1", account.id) == 0


# -- a reset confirm racing the owner securing the account ---------------------------------------


async def _change_password(client, account, superadmin_headers):
    return await client.post(
        f"{API}/auth/password",
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": "the owner's new password"},
    )


async def _logout_everywhere(client, account, superadmin_headers):
    return await client.post(f"{API}/auth/logout-all", headers=account.headers)


async def _admin_revokes(client, account, superadmin_headers):
    return await client.post(f"{API}/admin/users/{account.id}/revoke-sessions", headers=superadmin_headers)


async def _turn_mfa_on(client, account, superadmin_headers):
    from tests.auth.mfa_helpers import CONFIRM as MFA_CONFIRM
    from tests.auth.mfa_helpers import SETUP, code_at

    secret = (await client.post(SETUP, headers=account.headers)).json()["secret"]
    return await client.post(MFA_CONFIRM, headers=account.headers, json={"code": code_at(secret, 0)})


@pytest.mark.parametrize(
    "secure",
    [_change_password, _logout_everywhere, _admin_revokes, _turn_mfa_on],
    ids=["password change", "logout-all", "admin revoke", "MFA on"],
)
async def test_a_reset_confirm_overtaken_by_the_owner_securing_the_account_is_refused(
    mail_client, client, smtp, pg, superadmin_headers, monkeypatch, secure
):
    account = await register(mail_client)
    token = await _reset_token(mail_client, smtp, account.email)
    bcrypt = Gate(recovery.hash_password)
    monkeypatch.setattr(recovery, "hash_password", bcrypt)
    confirming = asyncio.create_task(_confirm(mail_client, token, "the attacker's password"))
    await eventually(lambda: bcrypt.held == 1, what="the confirm at bcrypt (its token checked)")
    secured = await secure(mail_client, account, superadmin_headers)
    assert secured.status_code in (200, 204), secured.text
    bcrypt.open()
    response = await confirming
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")
    attacker = await mail_client.post(
        f"{API}/auth/login", json={"email": account.email, "password": "the attacker's password"}
    )
    assert attacker.status_code == 401
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoke_reason = 'password_reset'", account.id
        )
        == 0
    )
