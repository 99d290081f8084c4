"""POST /api/v1/auth/password under attack: guesses count toward the lockout, and a check
that went stale (a change or revocation committed meanwhile) never wins."""

from __future__ import annotations

import asyncio

from manas360.security.passwords import hash_password
from manas360.services import auth as auth_service
from manas360.services import login as login_service
from tests.fixtures.accounts import API, PASSWORD, bearer, login
from tests.fixtures.gates import eventually

URL = f"{API}/auth/password"
NEW_PASSWORD = "a brand new passphrase"
WRONG = "definitely wrong"


async def _change(client, headers, current=PASSWORD, new=NEW_PASSWORD):
    return await client.post(URL, headers=headers, json={"current_password": current, "new_password": new})


async def _login(client, email, password):
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def test_wrong_current_passwords_count_toward_the_lockout(client, pg, account):
    statuses = [(await _change(client, account.headers, current=WRONG)).status_code for _ in range(7)]
    assert statuses == [401] * 5 + [423] * 2
    right = await _change(client, account.headers)
    assert (right.status_code, right.json()["error"]) == (423, "AccountLocked")
    assert right.json()["retry_after"] > 800
    assert (await _login(client, account.email, PASSWORD)).status_code == 423  # one lock per account
    assert await pg.fetchval("SELECT locked_until IS NOT NULL FROM user_accounts WHERE id = $1", account.id)


async def test_failed_logins_and_wrong_current_passwords_share_one_count(client, account):
    for _ in range(3):
        assert (await _login(client, account.email, WRONG)).status_code == 401
    assert [(await _change(client, account.headers, current=WRONG)).status_code for _ in range(3)] == [401, 401, 423]


async def test_a_login_checked_before_a_password_change_commits_gets_no_session(client, pg, account, gate):
    bcrypt = gate(login_service, "verify_password")
    stale = asyncio.create_task(_login(client, account.email, PASSWORD))
    await eventually(lambda: bcrypt.held == 1, what="the login at bcrypt")
    changed = await _change(client, account.headers)
    assert changed.status_code == 200
    bcrypt.open()
    response = await stale
    assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
                             account.id) == 1


async def test_a_login_cannot_restore_the_old_password_by_upgrading_its_cost(client, pg, account, gate):
    await pg.execute("UPDATE user_accounts SET password_hash = $2 WHERE id = $1", account.id,
                     await hash_password(password=PASSWORD, cost=5))  # outdated: the login would re-hash it
    bcrypt = gate(login_service, "verify_password")
    stale = asyncio.create_task(_login(client, account.email, PASSWORD))
    await eventually(lambda: bcrypt.held == 1, what="the login at bcrypt")
    assert (await _change(client, account.headers)).status_code == 200
    bcrypt.open()
    assert (await stale).status_code == 401
    assert (await _login(client, account.email, NEW_PASSWORD)).status_code == 200
    assert (await _login(client, account.email, PASSWORD)).status_code == 401


async def test_of_two_racing_changes_the_one_whose_session_was_revoked_loses(client, account, gate):
    """The victim changes the password while the attacker's change (from a second session,
    checked first) is still in flight: the victim's change revokes the attacker's session."""
    attacker = await login(client, account)
    bcrypt = gate(auth_service, "verify_password", hold=lambda n: n == 1)
    theirs = asyncio.create_task(_change(client, attacker.headers, new="the attacker's password"))
    await eventually(lambda: bcrypt.held == 1, what="the attacker's change at bcrypt")
    ours = await _change(client, account.headers)
    assert ours.status_code == 200
    bcrypt.open()
    response = await theirs
    assert (response.status_code, response.json()["error"]) == (401, "TokenRevoked")
    assert (await _login(client, account.email, NEW_PASSWORD)).status_code == 200
    assert (await _login(client, account.email, "the attacker's password")).status_code == 401
    me = await client.get(f"{API}/me", headers=bearer(ours.json()["access_token"]))
    assert me.status_code == 200
