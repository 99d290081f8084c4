"""Lockout: 5 failures in the window lock an email (known or not), atomically, durably."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from manas360.services.auth import login as login_service
from manas360.services.auth import password_check
from manas360.services.auth.lockout import unlock_account
from manas360.services.auth.sessions import Client
from manas360.settings import load_settings
from tests.fixtures.accounts import API, PASSWORD, register, unique_email
from tests.fixtures.app import client_for, running_app
from tests.fixtures.environment import delete_prefixed_keys
from tests.fixtures.gates import backends_waiting_for_locks, eventually

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
    # Locked for this source (durably, in PostgreSQL too), not account-wide.
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM account_source_locks WHERE user_id = $1 AND locked_until > now()", account.id
        )
        == 1
    )
    assert await pg.fetchval("SELECT locked_until FROM user_accounts WHERE id = $1", account.id) is None
    reasons = await pg.fetch("SELECT reason FROM login_attempts WHERE user_id = $1 ORDER BY id", account.id)
    assert [r["reason"] for r in reasons] == ["invalid_credentials"] * 5 + ["locked"] * 2
    audit = await pg.fetch(
        "SELECT action FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.account_locked'", account.id
    )
    assert len(audit) == 1


async def test_twenty_concurrent_wrong_passwords_lock_at_exactly_the_threshold(client, pg, account):
    responses = await asyncio.gather(*[_attempt(client, account.email) for _ in range(20)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 5 + [423] * 15
    counted = await pg.fetchval(
        "SELECT count(*) FROM login_attempts WHERE user_id = $1 AND reason = 'invalid_credentials'", account.id
    )
    assert counted == 5
    assert await pg.fetchval("SELECT count(*) FROM login_attempts WHERE user_id = $1", account.id) == 20


async def test_unknown_email_is_counted_and_locked_exactly_like_a_known_one(client, account):
    ghost = unique_email("ghost")
    known = [(await _attempt(client, account.email)).json() for _ in range(6)]
    unknown = [(await _attempt(client, ghost)).json() for _ in range(6)]
    expected = ["InvalidCredentials"] * 5 + ["AccountLocked"]
    assert [b["error"] for b in known] == [b["error"] for b in unknown] == expected
    assert abs(known[-1]["retry_after"] - unknown[-1]["retry_after"]) <= 1
    assert set(known[-1]) == set(unknown[-1])


async def test_concurrent_failures_for_an_unknown_email_also_stop_at_the_threshold(client, pg):
    ghost = unique_email("ghost")
    responses = await asyncio.gather(*[_attempt(client, ghost) for _ in range(12)])
    assert sorted(r.status_code for r in responses) == [401] * 5 + [423] * 7
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM login_attempts WHERE email = $1 AND reason = 'invalid_credentials'", ghost
        )
        == 5
    )


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
    await unlock_account(
        db=app.ctx.deps.db,
        settings=app.ctx.deps.settings,
        store=app.ctx.deps.store,
        user_id=account.id,
        actor_id=None,
        ip="10.0.0.1",
    )
    assert await pg.fetchval("SELECT count(*) FROM account_source_locks WHERE user_id = $1", account.id) == 0
    assert (await _attempt(client, account.email, PASSWORD)).status_code == 200
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.account_unlocked'", account.id
        )
        == 1
    )


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


# -- checks are reserved before bcrypt ------------------------------------------------------


async def test_concurrency_buys_no_extra_guesses_and_no_tokens_after_the_lock(client, pg, account, gate):
    """The review's attack: 11 wrong passwords and the right one at once. Every check is held
    in front of bcrypt until all twelve requests are in: only LOCKOUT_THRESHOLD may get there."""
    bcrypt = gate(password_check, "verify_password")
    tasks = [asyncio.create_task(_attempt(client, account.email, password)) for password in [WRONG] * 11 + [PASSWORD]]
    await eventually(lambda: bcrypt.held + sum(task.done() for task in tasks) == 12, what="every request placed")
    assert bcrypt.held == 5  # the other seven were refused before bcrypt
    refused = [task.result().status_code for task in tasks if task.done()]
    assert refused == [423] * 7
    bcrypt.open()
    statuses = [(await task).status_code for task in tasks]
    assert bcrypt.calls == 5
    assert statuses.count(423) == 7 and statuses.count(401) + statuses.count(200) == 5
    assert statuses.count(200) <= 1
    if statuses.count(401) == 5:  # the right password was refused: locked, no session
        assert statuses.count(200) == 0
        assert (await _attempt(client, account.email, PASSWORD)).status_code == 423
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id) == 1 + statuses.count(200)


async def test_right_password_is_refused_while_checks_in_flight_could_lock(client, account, gate):
    for _ in range(4):
        assert (await _attempt(client, account.email)).status_code == 401
    bcrypt = gate(password_check, "verify_password")
    fifth = asyncio.create_task(_attempt(client, account.email))
    await eventually(lambda: bcrypt.held == 1, what="the fifth wrong password at bcrypt")
    right = asyncio.create_task(_attempt(client, account.email, PASSWORD))
    await eventually(lambda: right.done() or bcrypt.held == 2, what="the right password answered or at bcrypt")
    bcrypt.open()
    assert (await right).status_code == 423 and bcrypt.calls == 1
    assert (await fifth).status_code == 401
    assert (await _attempt(client, account.email, PASSWORD)).status_code == 423


async def test_a_lock_set_while_the_right_password_is_checked_wins(client, pg, account, gate):
    """The write transaction re-checks the lock: a lock that lands during bcrypt (from another
    worker, a lapsed reservation) still keeps the tokens back."""
    bcrypt = gate(password_check, "verify_password")
    right = asyncio.create_task(_attempt(client, account.email, PASSWORD))
    await eventually(lambda: bcrypt.held == 1, what="the login at bcrypt")
    await pg.execute("UPDATE user_accounts SET locked_until = now() + interval '15 minutes' WHERE id = $1", account.id)
    bcrypt.open()
    response = await right
    assert response.status_code == 423 and response.json()["retry_after"] > 800
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id) == 1


async def test_a_cancelled_login_releases_its_reservation(app, db, redis_raw, account, gate):
    bcrypt = gate(password_check, "verify_password")
    deps = app.ctx.deps
    task = asyncio.create_task(
        login_service.login(
            db=deps.db,
            settings=deps.settings,
            store=deps.store,
            codec=deps.codec,
            clock=deps.clock,
            email=account.email,
            password=PASSWORD,
            client=Client(ip="10.0.0.2"),
        )
    )
    await eventually(lambda: bcrypt.held == 1, what="the login at bcrypt")
    pending = app.ctx.deps.store.keys.login_source(account.email, "10.0.0.2") + ":pending"
    assert await redis_raw.zcard(pending) == 1
    assert await redis_raw.zcard(app.ctx.deps.store.keys.login_pending(account.email)) == 1
    task.cancel()
    await eventually(lambda: _zero(redis_raw, pending), what="the reservation released")
    with pytest.raises(asyncio.CancelledError):
        await task


async def _zero(redis_raw, key) -> bool:
    return await redis_raw.zcard(key) == 0


async def test_the_failure_counter_expires_with_its_window(client, redis_raw, settings, app, account):
    assert (await _attempt(client, account.email)).status_code == 401
    ttl_ms = await redis_raw.pttl(app.ctx.deps.store.keys.login_failures(account.email))
    assert 0 < ttl_ms <= settings.lockout_window_s * 1000


async def test_wrong_password_of_a_disabled_account_is_401_and_counted_the_right_one_403(client, pg, account):
    await pg.execute("UPDATE user_accounts SET status = 'disabled' WHERE id = $1", account.id)
    wrong = await _attempt(client, account.email)
    assert (wrong.status_code, wrong.json()["error"]) == (401, "InvalidCredentials")
    right = await _attempt(client, account.email, PASSWORD)
    assert (right.status_code, right.json()["error"]) == (403, "AccountDisabled")
    assert "access_token" not in right.json()
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id) == 1
    reasons = await pg.fetch("SELECT reason FROM login_attempts WHERE user_id = $1 ORDER BY id", account.id)
    assert [r["reason"] for r in reasons] == ["invalid_credentials", "disabled"]


# -- unlock against a failure being counted -------------------------------------------------


async def test_an_unlock_queued_behind_the_locking_failure_is_not_lost(client, app, db, pg, account, database):
    for _ in range(4):
        await _attempt(client, account.email)
    holder = await asyncpg.connect(database.replace("postgres://", "postgresql://", 1))
    try:
        # Hold the user row so both steps queue on it: the fifth failure first, then the unlock.
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM user_accounts WHERE id = $1 FOR UPDATE", account.id)
        fifth = asyncio.create_task(_attempt(client, account.email))
        await eventually(lambda: backends_waiting_for_locks(pg), what="the failure waiting on the row")
        unlock = asyncio.create_task(
            unlock_account(
                db=app.ctx.deps.db, settings=app.ctx.deps.settings, store=app.ctx.deps.store, user_id=account.id
            )
        )
        await eventually(lambda: _waiting(pg, 2), what="the unlock waiting on the row")
        await transaction.commit()
    finally:
        await holder.close()
    assert (await fifth).status_code == 401
    await unlock
    # The unlock came after the lock: nothing of the lock may survive it.
    assert await pg.fetchval("SELECT count(*) FROM account_source_locks WHERE user_id = $1", account.id) == 0
    assert (await _attempt(client, account.email, PASSWORD)).status_code == 200


async def _waiting(pg, n: int) -> bool:
    return await backends_waiting_for_locks(pg) >= n
