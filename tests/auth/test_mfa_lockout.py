"""Wrong second-factor codes count toward the account's lockout exactly like failed logins,
reserved before the code is looked at: concurrency never buys extra guesses."""

from __future__ import annotations

import asyncio

from manas360.services import mfa as mfa_service
from tests.auth.mfa_helpers import LOGIN, TOTP, enable, mfa_token, verify, wrong_code
from tests.fixtures.gates import eventually


async def test_concurrent_wrong_codes_buy_no_extra_guesses(client, pg, account, gate):
    """Eleven wrong codes and the right one at once, every check held until all twelve are in:
    only LOCKOUT_THRESHOLD checks may run; the rest are 423 before the code is looked at."""
    enabled = await enable(client, account)
    tokens = [await mfa_token(client, account) for _ in range(12)]
    check = gate(mfa_service, "check_code")
    codes = [wrong_code(enabled.secret)] * 11 + [enabled.code()]
    tasks = [asyncio.create_task(verify(client, token, code)) for token, code in zip(tokens, codes, strict=True)]
    await eventually(lambda: check.held + sum(task.done() for task in tasks) == 12, what="every verify placed")
    assert check.held == 5
    assert [task.result().status_code for task in tasks if task.done()] == [423] * 7
    check.open()
    statuses = [(await task).status_code for task in tasks]
    assert check.calls == 5
    assert statuses.count(423) == 7 and statuses.count(401) + statuses.count(200) == 5
    assert statuses.count(200) <= 1
    sessions = await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id)
    assert sessions == 1 + statuses.count(200)
    if statuses.count(401) == 5:  # the right code lost the race to the lock: locked, no session
        assert (await client.post(LOGIN, json={"email": account.email, "password": account.password})
                ).status_code == 423


async def test_twenty_concurrent_wrong_codes_lock_at_exactly_the_threshold(client, pg, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    responses = await asyncio.gather(*[verify(client, token, wrong_code(enabled.secret)) for _ in range(20)])
    assert sorted(r.status_code for r in responses) == [401] * 5 + [423] * 15
    assert await pg.fetchval("SELECT locked_until > now() FROM user_accounts WHERE id = $1", account.id)
    failures = await pg.fetchval("SELECT count(*) FROM audit_logs WHERE target_user_id = $1 "
                                 "AND action = 'auth.mfa_failed'", account.id)
    assert failures == 5


async def test_fifth_wrong_code_locks_and_then_even_the_right_code_and_password_are_423(client, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    statuses = [(await verify(client, token, wrong_code(enabled.secret))).json()["error"] for _ in range(5)]
    assert statuses == ["InvalidCredentials"] * 5
    locked = await verify(client, token, enabled.code())
    assert locked.status_code == 423 and locked.json()["retry_after"] > 800
    login = await client.post(LOGIN, json={"email": account.email, "password": account.password})
    assert login.status_code == 423


async def test_wrong_codes_and_wrong_passwords_share_one_count(client, account):
    enabled = await enable(client, account)
    for _ in range(3):
        response = await client.post(LOGIN, json={"email": account.email, "password": "definitely wrong"})
        assert response.status_code == 401
    token = await mfa_token(client, account)
    assert (await verify(client, token, wrong_code(enabled.secret))).status_code == 401
    assert (await verify(client, token, wrong_code(enabled.secret))).status_code == 401
    assert (await verify(client, token, enabled.code())).status_code == 423


async def test_wrong_codes_to_turn_mfa_off_count_toward_the_lockout(client, pg, account):
    enabled = await enable(client, account)
    for _ in range(5):
        response = await client.request("DELETE", TOTP, headers=account.headers,
                                        json={"code": wrong_code(enabled.secret)})
        assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")
    refused = await client.request("DELETE", TOTP, headers=account.headers, json={"code": enabled.code()})
    assert refused.status_code == 423
    assert await pg.fetchval("SELECT mfa_enabled FROM user_accounts WHERE id = $1", account.id)
