"""POST /api/v1/auth/password under attack: guesses count toward the lockout, and a check
that went stale (a change or revocation committed meanwhile) never wins."""

from __future__ import annotations

import asyncio

from manas360.security.passwords import hash_password
from manas360.services.auth import password_check
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
    assert (await _login(client, account.email, PASSWORD)).status_code == 423  # one lock per account and source
    assert await pg.fetchval("SELECT count(*) FROM account_source_locks WHERE user_id = $1", account.id) == 1


async def test_failed_logins_and_wrong_current_passwords_share_one_count(client, account):
    for _ in range(3):
        assert (await _login(client, account.email, WRONG)).status_code == 401
    assert [(await _change(client, account.headers, current=WRONG)).status_code for _ in range(3)] == [401, 401, 423]


async def test_a_login_checked_before_a_password_change_commits_gets_no_session(client, pg, account, gate):
    bcrypt = gate(password_check, "verify_password", hold=lambda n: n == 1)
    stale = asyncio.create_task(_login(client, account.email, PASSWORD))
    await eventually(lambda: bcrypt.held == 1, what="the login at bcrypt")
    changed = await _change(client, account.headers)
    assert changed.status_code == 200
    bcrypt.open()
    response = await stale
    assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", account.id) == 1


async def test_a_login_cannot_restore_the_old_password_by_upgrading_its_cost(client, pg, account, gate):
    await pg.execute(
        "UPDATE user_accounts SET password_hash = $2 WHERE id = $1",
        account.id,
        await hash_password(password=PASSWORD, cost=5),
    )  # outdated: the login would re-hash it
    bcrypt = gate(password_check, "verify_password", hold=lambda n: n == 1)
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
    bcrypt = gate(password_check, "verify_password", hold=lambda n: n == 1)
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


# -- a re-hash at a new cost is not a password change ---------------------------------------


async def _old_cost(pg, account) -> None:
    await pg.execute(
        "UPDATE user_accounts SET password_hash = $2 WHERE id = $1",
        account.id,
        await hash_password(password=PASSWORD, cost=5),
    )  # outdated: a login re-hashes it


async def test_a_password_change_racing_a_login_that_upgrades_the_cost_succeeds(client, pg, account, gate):
    """The login re-hashes at the current cost while the change's check of the old hash is in
    flight: the change must still win (the re-hash keeps the password's version)."""
    await _old_cost(pg, account)
    bcrypt = gate(password_check, "verify_password", hold=lambda n: n == 1)
    change = asyncio.create_task(_change(client, account.headers))
    await eventually(lambda: bcrypt.held == 1, what="the change's check at bcrypt")
    logged_in = await _login(client, account.email, PASSWORD)  # re-hashes the old password, commits
    assert logged_in.status_code == 200
    version = await pg.fetchval("SELECT password_version FROM user_accounts WHERE id = $1", account.id)
    bcrypt.open()
    response = await change
    assert response.status_code == 200, response.text
    assert await pg.fetchval("SELECT password_version FROM user_accounts WHERE id = $1", account.id) == version + 1
    assert (await _login(client, account.email, NEW_PASSWORD)).status_code == 200
    assert (await _login(client, account.email, PASSWORD)).status_code == 401


async def test_concurrent_right_logins_on_an_old_cost_hash_all_succeed(client, pg, account):
    await _old_cost(pg, account)
    responses = await asyncio.gather(*[_login(client, account.email, PASSWORD) for _ in range(3)])
    assert [r.status_code for r in responses] == [200] * 3, [r.text for r in responses]
    stored = await pg.fetchval("SELECT password_hash FROM user_accounts WHERE id = $1", account.id)
    assert not stored.startswith("$2b$05$")  # upgraded once, by one of them
