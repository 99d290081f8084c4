"""Lockout: 5 failures in the window lock an email (known or not), atomically, durably."""

from __future__ import annotations

import asyncio

from manas360.services.lockout import unlock_account
from manas360.settings import load_settings
from tests.fixtures.accounts import API, PASSWORD, register, unique_email
from tests.fixtures.app import client_for, running_app
from tests.fixtures.environment import delete_prefixed_keys

URL = f"{API}/auth/login"
WRONG = "definitely wrong"


async def _attempt(client, email, password=WRONG):
    return await client.post(URL, json={"email": email, "password": password})


async def test_fifth_failure_is_401_and_every_attempt_after_is_423_even_with_the_right_password(client, pg, account):
    statuses = [(await _attempt(client, account.email)).status_code for _ in range(5)]
    assert statuses == [401] * 5
    locked = await _attempt(client, account.email)
    assert locked.status_code == 423
    body = locked.json()
    assert body["error"] == "AccountLocked" and 890 <= body["retry_after"] <= 900
    right = await _attempt(client, account.email, PASSWORD)
    assert right.status_code == 423
    until = await pg.fetchval("SELECT locked_until FROM user_accounts WHERE id = $1", account.id)
    assert until is not None
    reasons = await pg.fetch("SELECT reason FROM login_attempts WHERE user_id = $1 ORDER BY id", account.id)
    assert [r["reason"] for r in reasons] == ["invalid_credentials"] * 5 + ["locked"] * 2
    audit = await pg.fetch("SELECT action FROM audit_logs WHERE target_user_id = $1 AND action = "
                           "'auth.account_locked'", account.id)
    assert len(audit) == 1


async def test_twenty_concurrent_wrong_passwords_lock_at_exactly_the_threshold(client, pg, account):
    responses = await asyncio.gather(*[_attempt(client, account.email) for _ in range(20)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 5 + [423] * 15
    counted = await pg.fetchval("SELECT count(*) FROM login_attempts WHERE user_id = $1 "
                                "AND reason = 'invalid_credentials'", account.id)
    assert counted == 5
    assert await pg.fetchval("SELECT count(*) FROM login_attempts WHERE user_id = $1", account.id) == 20


async def test_unknown_email_is_counted_and_locked_exactly_like_a_known_one(client, account):
    ghost = unique_email("ghost")
    known = [(await _attempt(client, account.email)).json() for _ in range(6)]
    unknown = [(await _attempt(client, ghost)).json() for _ in range(6)]
    assert [b["error"] for b in known] == [b["error"] for b in unknown] == ["InvalidCredentials"] * 5 + ["AccountLocked"]
    assert abs(known[-1]["retry_after"] - unknown[-1]["retry_after"]) <= 1
    assert set(known[-1]) == set(unknown[-1])


async def test_concurrent_failures_for_an_unknown_email_also_stop_at_the_threshold(client, pg):
    ghost = unique_email("ghost")
    responses = await asyncio.gather(*[_attempt(client, ghost) for _ in range(12)])
    assert sorted(r.status_code for r in responses) == [401] * 5 + [423] * 7
    assert await pg.fetchval("SELECT count(*) FROM login_attempts WHERE email = $1 "
                             "AND reason = 'invalid_credentials'", ghost) == 5


async def test_a_lock_survives_losing_every_redis_key(client, redis_raw, settings, account):
    for _ in range(5):
        await _attempt(client, account.email)
    await delete_prefixed_keys(redis_raw, settings.redis_prefix)
    response = await _attempt(client, account.email, PASSWORD)
    assert response.status_code == 423 and response.json()["retry_after"] > 800


async def test_refreshing_tokens_does_not_reset_the_failure_count(client, account):
    for _ in range(4):
        await _attempt(client, account.email)
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refreshed.status_code == 200
    assert (await _attempt(client, account.email)).status_code == 401
    assert (await _attempt(client, account.email, PASSWORD)).status_code == 423


async def test_unlock_account_lets_the_user_in_at_once(client, app, db, pg, account):
    for _ in range(6):
        await _attempt(client, account.email)
    await unlock_account(app.ctx, user_id=account.id, actor_id=None, ip="10.0.0.1")
    assert await pg.fetchval("SELECT locked_until FROM user_accounts WHERE id = $1", account.id) is None
    assert (await _attempt(client, account.email, PASSWORD)).status_code == 200
    assert await pg.fetchval("SELECT count(*) FROM audit_logs WHERE target_user_id = $1 "
                             "AND action = 'auth.account_unlocked'", account.id) == 1


async def test_lock_ends_after_its_duration(environ, database, redis_raw):
    quick = load_settings({**environ, "LOCKOUT_DURATION_S": "1"})
    async with running_app(quick) as quick_app, client_for(quick_app) as client:
        account = await register(client)
        for _ in range(5):
            await _attempt(client, account.email)
        locked = await _attempt(client, account.email, PASSWORD)
        assert locked.status_code == 423 and locked.json()["retry_after"] == 1
        for _ in range(40):  # the lock is 1 s long: poll for its end, bounded
            await asyncio.sleep(0.05)
            response = await _attempt(client, account.email, PASSWORD)
            if response.status_code == 200:
                break
        assert response.status_code == 200
