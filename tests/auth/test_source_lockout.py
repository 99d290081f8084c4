"""Lockout per (account, source), under an account-wide ceiling that spares known sources:
nobody can keep an owner out from one address, and a flood from many is still stopped."""

from __future__ import annotations

import asyncio
import hashlib
import secrets

import pytest

from manas360.settings import load_settings
from tests.fixtures.accounts import API, PASSWORD, Account, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.environment import delete_prefixed_keys
from tests.fixtures.outbox import mail_bodies

LOGIN = f"{API}/auth/login"
WRONG = "definitely wrong"


async def _login(client, account: Account, password: str = PASSWORD):
    return await client.post(LOGIN, json={"email": account.email, "password": password})


async def _lock_from(app, account: Account, ip: str, failures: int = 5) -> None:
    async with client_for(app, client_ip=ip) as attacker:
        for _ in range(failures):
            assert (await _login(attacker, account, WRONG)).status_code == 401


async def test_a_source_that_locks_an_account_locks_it_only_for_itself(app, client, pg, account):
    await _lock_from(app, account, "203.0.113.5")
    async with client_for(app, client_ip="203.0.113.5") as attacker:
        refused = await _login(attacker, account)
        assert (refused.status_code, refused.json()["error"]) == (423, "AccountLocked")
    assert (await _login(client, account)).status_code == 200  # the owner, elsewhere, is not kept out
    rows = await pg.fetch("SELECT source FROM account_source_locks WHERE user_id = $1", account.id)
    assert [r["source"] for r in rows] == ["203.0.113.5"]


async def test_one_ipv6_64_is_one_source(app, account):
    await _lock_from(app, account, "2001:db8:7:1::1", failures=3)
    async with client_for(app, client_ip="2001:db8:7:1:ffff::2") as neighbour:
        assert (await _login(neighbour, account, WRONG)).status_code == 401
        assert (await _login(neighbour, account, WRONG)).status_code == 401  # the 5th of the /64
        assert (await _login(neighbour, account)).status_code == 423
    async with client_for(app, client_ip="2001:db8:7:2::1") as next_prefix:
        assert (await _login(next_prefix, account)).status_code == 200


async def test_a_per_source_lock_survives_losing_redis_and_other_sources_stay_open(
    app, client, redis_raw, settings, account
):
    await _lock_from(app, account, "198.51.100.20")
    await delete_prefixed_keys(redis_raw, settings.redis_prefix)
    async with client_for(app, client_ip="198.51.100.20") as attacker:
        refused = await _login(attacker, account)
        assert refused.status_code == 423 and refused.json()["retry_after"] > 800
    assert (await _login(client, account)).status_code == 200


async def test_two_sources_racing_each_get_exactly_the_threshold(app, pg, account):
    async with client_for(app, client_ip="192.0.2.10") as one, client_for(app, client_ip="192.0.2.11") as two:
        answers = await asyncio.gather(*[_login(c, account, WRONG) for c in (one, two) for _ in range(15)])
    statuses = [a.status_code for a in answers]
    assert (statuses.count(401), statuses.count(423)) == (10, 20)
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM login_attempts WHERE user_id = $1 AND reason = 'invalid_credentials'", account.id
        )
        == 10
    )


async def test_admin_sees_every_lock_and_one_unlock_lifts_them_all(app, client, pg, account, superadmin_headers):
    await _lock_from(app, account, "192.0.2.30")
    await _lock_from(app, account, "192.0.2.31")
    detail = (await client.get(f"{API}/admin/users/{account.id}", headers=superadmin_headers)).json()
    assert sorted(lock["source"] for lock in detail["locks"]) == ["192.0.2.30", "192.0.2.31"]
    assert detail["locked_until"] == max(lock["until"] for lock in detail["locks"])
    assert (await client.post(f"{API}/admin/users/{account.id}/unlock", headers=superadmin_headers)).status_code == 204
    for ip in ("192.0.2.30", "192.0.2.31"):
        async with client_for(app, client_ip=ip) as caller:
            assert (await _login(caller, account)).status_code == 200
    detail = (await client.get(f"{API}/admin/users/{account.id}", headers=superadmin_headers)).json()
    assert (detail["locks"], detail["locked_until"]) == ([], None)


async def test_a_confirmed_reset_clears_every_lock_of_the_account(app, client, pg, account):
    for ip in ("192.0.2.40", "192.0.2.41"):
        await _lock_from(app, account, ip)
    token = secrets.token_urlsafe(32)
    await pg.execute(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at) "
        "VALUES ($1, $2, 'password_reset', now() + interval '30 minutes')",
        hashlib.sha256(token.encode()).hexdigest(),
        account.id,
    )
    async with client_for(app, client_ip="192.0.2.40") as locked_out:  # MFA off: accepted under a lock
        confirmed = await locked_out.post(
            f"{API}/auth/password-reset/confirm", json={"token": token, "new_password": "the owner's new password"}
        )
        assert confirmed.status_code == 200, confirmed.text
    for ip in ("192.0.2.40", "192.0.2.41"):
        async with client_for(app, client_ip=ip) as caller:
            assert (await _login(caller, account, "the owner's new password")).status_code == 200
    assert await pg.fetchval("SELECT count(*) FROM account_source_locks WHERE user_id = $1", account.id) == 0


# -- the account-wide ceiling -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def ceiling_app(environ, database, redis_raw):
    settings = load_settings({**environ, "LOCKOUT_ACCOUNT_THRESHOLD": "8"})
    async with running_app(settings) as app:
        yield app


async def test_the_account_wide_ceiling_locks_every_unknown_source_but_not_a_known_one(ceiling_app, pg):
    async with client_for(ceiling_app, client_ip="198.51.100.1") as owner_client:
        account = await register(owner_client)
        assert (await _login(owner_client, account)).status_code == 200  # a known source from now on
    await _lock_from(ceiling_app, account, "203.0.113.1", failures=4)
    await _lock_from(ceiling_app, account, "203.0.113.2", failures=4)  # the 8th failure: account-wide
    async with client_for(ceiling_app, client_ip="203.0.113.3") as stranger:
        refused = await _login(stranger, account)
        assert (refused.status_code, refused.json()["error"]) == (423, "AccountLocked")
    async with client_for(ceiling_app, client_ip="198.51.100.1") as owner_client:
        assert (await _login(owner_client, account)).status_code == 200
    assert await pg.fetchval("SELECT locked_until > now() FROM user_accounts WHERE id = $1", account.id)
    notices = await mail_bodies(pg, ceiling_app.ctx.deps.settings, user_id=account.id, kind="security_notice")
    assert len(notices) == 1 and "paused everywhere" in notices[0]
    assert (
        await pg.fetchval("SELECT subject FROM outbox WHERE user_id = $1 AND kind = 'security_notice'", account.id)
        == "Account security"
    )


async def test_the_account_wide_ceiling_holds_under_concurrency_from_many_sources(ceiling_app, pg):
    async with client_for(ceiling_app) as setup:
        account = await register(setup)
    clients = [client_for(ceiling_app, client_ip=f"203.0.113.{n}") for n in range(10, 16)]
    opened = [await c.__aenter__() for c in clients]
    try:
        answers = await asyncio.gather(*[_login(c, account, WRONG) for c in opened for _ in range(4)])
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)
    assert [a.status_code for a in answers].count(401) == 8  # evaluated: the ceiling, whatever the spread
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM login_attempts WHERE user_id = $1 AND reason = 'invalid_credentials'", account.id
        )
        == 8
    )
