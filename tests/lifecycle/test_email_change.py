"""Changing the address: double confirmation, the cancel link that voids or reverts, the
taken address that is never revealed, and the races (two accounts for one address, a cancel
against a confirm)."""

from __future__ import annotations

import asyncio
import re

from manas360.services.mail import messages as mail
from tests.auth.mfa_helpers import enable
from tests.fixtures.accounts import API, PASSWORD, bearer, login, register, unique_email
from tests.fixtures.outbox import mail_bodies

NEW_PASSWORD = "a brand new passphrase"


def _token(body: str, path: str) -> str:
    match = re.search(rf"/{path}#token=([A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


async def _request(client, account, new_email, status=202):
    response = await client.post(f"{API}/me/email", headers=account.headers, json={"new_email": new_email})
    assert response.status_code == status, response.text
    return response


async def _links(pg, settings, account) -> tuple[str, str]:
    confirm = (await mail_bodies(pg, settings, user_id=account.id, kind="email_change_confirm"))[-1]
    notice = (await mail_bodies(pg, settings, user_id=account.id, kind="email_change_notice"))[-1]
    return _token(confirm, "confirm-email"), _token(notice, "cancel-email-change")


async def test_confirm_then_revert_gives_the_account_back(client, pg, settings):
    account = await register(client)
    other_session = await login(client, account)
    new_email = unique_email("moved")
    await _request(client, account, new_email)
    confirm, cancel = await _links(pg, settings, account)

    confirmed = await client.post(f"{API}/auth/email-change/confirm", headers=account.headers, json={"token": confirm})
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["email"], confirmed.json()["email_verified"]) == (new_email, True)
    assert (await client.get(f"{API}/me", headers=other_session.headers)).status_code == 401  # others revoked
    assert (await client.get(f"{API}/me", headers=account.headers)).status_code == 200  # the caller stays
    # The old address is reserved during the window; a second change waits for it to close.
    taken = await client.post(f"{API}/auth/register", json={"email": account.email, "password": PASSWORD})
    assert (taken.status_code, taken.json()["error"]) == (409, "EmailTaken")
    pending = await _request(client, account, unique_email(), status=409)
    assert pending.json()["error"] == "EmailChangePending"

    # The taker adds a factor and a password; the owner reverts.
    await enable(client, account)
    changed = await client.post(
        f"{API}/auth/password",
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    reverted = await client.post(f"{API}/auth/email-change/cancel", json={"token": cancel})
    assert reverted.status_code == 200, reverted.text
    row = await pg.fetchrow("SELECT email, mfa_enabled FROM user_accounts WHERE id = $1", account.id)
    assert (row["email"], row["mfa_enabled"]) == (account.email, False)
    assert await pg.fetchval("SELECT count(*) FROM mfa_totp WHERE user_id = $1", account.id) == 0
    assert await pg.fetchval("SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1", account.id) == 0
    assert (await client.get(f"{API}/me", headers=bearer(changed.json()["access_token"]))).status_code == 401
    for password in (NEW_PASSWORD, PASSWORD):  # the taker's password is unusable; the old one was replaced
        attempt = await client.post(f"{API}/auth/login", json={"email": account.email, "password": password})
        assert attempt.status_code == 401
    [*_, reset] = await mail_bodies(pg, settings, user_id=account.id, kind="password_reset")
    token = _token(reset, "reset-password")
    back = await client.post(
        f"{API}/auth/password-reset/confirm", json={"token": token, "new_password": "mine again, thanks"}
    )
    assert back.status_code == 200, back.text
    again = await client.post(f"{API}/auth/email-change/cancel", json={"token": cancel})
    assert (again.status_code, again.json()["error"]) == (401, "InvalidToken")


async def test_a_taken_address_gets_a_mail_and_nothing_changes(client, pg, settings):
    owner, asker = await register(client), await register(client)
    response = await _request(client, asker, owner.email)
    assert response.json() == {}
    rows = await pg.fetch(
        "SELECT kind, user_id FROM outbox WHERE lower(recipient) = $1 AND kind = $2",
        owner.email,
        mail.EMAIL_TAKEN_NOTICE,
    )
    assert [(r["kind"], r["user_id"]) for r in rows] == [(mail.EMAIL_TAKEN_NOTICE, None)]
    assert await mail_bodies(pg, settings, user_id=asker.id, kind="email_change_confirm") == []


async def test_only_the_same_account_confirms_and_a_security_event_voids_the_confirm_not_the_cancel(
    client, pg, settings
):
    account, stranger = await register(client), await register(client)
    await _request(client, account, unique_email())
    confirm, cancel = await _links(pg, settings, account)
    foreign = await client.post(f"{API}/auth/email-change/confirm", headers=stranger.headers, json={"token": confirm})
    assert (foreign.status_code, foreign.json()["error"]) == (401, "InvalidToken")
    # A security event (logout-all) voids the confirm link; the cancel link survives.
    await client.post(f"{API}/auth/logout-all", headers=account.headers)
    account = await login(client, account)
    voided = await client.post(f"{API}/auth/email-change/confirm", headers=account.headers, json={"token": confirm})
    assert (voided.status_code, voided.json()["error"]) == (401, "InvalidToken")
    assert (await client.post(f"{API}/auth/email-change/cancel", json={"token": cancel})).status_code == 200


async def test_two_accounts_confirming_one_address_end_with_one_owner(client, pg, settings):
    target = unique_email("contested")
    first, second = await register(client), await register(client)
    await _request(client, first, target)
    await _request(client, second, target)
    tokens = [(await _links(pg, settings, a))[0] for a in (first, second)]
    answers = await asyncio.gather(
        *(
            client.post(f"{API}/auth/email-change/confirm", headers=a.headers, json={"token": t})
            for a, t in zip((first, second), tokens, strict=True)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    assert [a.json()["error"] for a in answers if a.status_code == 409] == ["EmailTaken"]
    assert await pg.fetchval("SELECT count(*) FROM user_accounts WHERE lower(email) = $1", target) == 1


async def test_cancel_racing_confirm_ends_one_way(client, pg, settings):
    for _ in range(3):
        account = await register(client)
        new_email = unique_email()
        await _request(client, account, new_email)
        confirm, cancel = await _links(pg, settings, account)
        confirmed, cancelled = await asyncio.gather(
            client.post(f"{API}/auth/email-change/confirm", headers=account.headers, json={"token": confirm}),
            client.post(f"{API}/auth/email-change/cancel", json={"token": cancel}),
        )
        assert cancelled.status_code == 200, cancelled.text
        row = await pg.fetchrow(
            "SELECT confirmed_at, cancelled_at, reverted_at FROM email_changes WHERE user_id = $1", account.id
        )
        email = await pg.fetchval("SELECT email FROM user_accounts WHERE id = $1", account.id)
        assert email == account.email  # voided before, or reverted after: the old address either way
        if confirmed.status_code == 200:
            assert row["confirmed_at"] is not None and row["reverted_at"] is not None
        else:
            assert confirmed.json()["error"] == "InvalidToken"
            assert row["cancelled_at"] is not None and row["confirmed_at"] is None


async def test_at_most_three_mails_an_hour_to_one_address_whoever_asks(client, pg):
    target = unique_email("flooded")
    askers = [await register(client) for _ in range(5)]
    for asker in askers:
        assert (await _request(client, asker, target)).json() == {}
    assert await pg.fetchval("SELECT count(*) FROM outbox WHERE lower(recipient) = $1", target) == 3
