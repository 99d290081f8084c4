"""POST /api/v1/auth/login: the happy path, no account enumeration, attempts, rehashing."""

from __future__ import annotations

import bcrypt
import pytest

from manas360.security import passwords
from manas360.security.passwords import hash_password, needs_rehash
from manas360.settings import load_settings
from tests.fixtures.accounts import API, PASSWORD, register, unique_email
from tests.fixtures.app import client_for, running_app

URL = f"{API}/auth/login"


async def test_login_returns_a_pair_for_a_new_session(client, pg, account):
    response = await client.post(
        URL, json={"email": account.email.upper(), "password": PASSWORD}, headers={"user-agent": "tests/1.0"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == account.pair["user"] and body["token_type"] == "Bearer"
    assert body["refresh_token"] != account.refresh_token
    me = await client.get(f"{API}/me", headers={"authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id) == 2
    attempt = await pg.fetchrow("SELECT * FROM login_attempts WHERE user_id = $1", account.id)
    assert (attempt["success"], attempt["reason"], attempt["ip"], attempt["user_agent"]) == (
        True,
        "ok",
        "127.0.0.1",
        "tests/1.0",
    )
    assert await pg.fetchval("SELECT last_login_at IS NOT NULL FROM user_accounts WHERE id = $1", account.id)
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.login'", account.id
        )
        == 1
    )


async def test_unknown_email_and_wrong_password_get_the_same_answer(client, pg, account):
    unknown = await client.post(URL, json={"email": unique_email(), "password": PASSWORD})
    wrong = await client.post(URL, json={"email": account.email, "password": "not the password"})
    assert unknown.status_code == wrong.status_code == 401
    strip = lambda body: {k: v for k, v in body.items() if k != "request_id"}  # noqa: E731
    assert (
        strip(unknown.json())
        == strip(wrong.json())
        == {"error": "InvalidCredentials", "message": "Invalid email or password"}
    )
    assert set(unknown.headers) - {"x-request-id"} == set(wrong.headers) - {"x-request-id"}
    attempt = await pg.fetchrow("SELECT success, reason FROM login_attempts WHERE user_id = $1", account.id)
    assert (attempt["success"], attempt["reason"]) == (False, "invalid_credentials")


async def test_unknown_email_is_checked_against_a_dummy_hash(client, monkeypatch):
    calls = []

    async def spy(*, password, cost):
        calls.append(cost)

    monkeypatch.setattr("manas360.services.auth.password_check.verify_dummy", spy)
    response = await client.post(URL, json={"email": unique_email(), "password": PASSWORD})
    assert response.status_code == 401 and calls == [4]


async def test_failed_logins_are_audited_with_and_without_an_account(client, pg, account):
    ghost = unique_email("ghost")
    await client.post(URL, json={"email": ghost, "password": PASSWORD})
    await client.post(URL, json={"email": account.email, "password": "not the password"})
    rows = await pg.fetch(
        "SELECT target_user_id, after FROM audit_logs WHERE action = 'auth.login_failed' "
        "AND (after->>'email' = $1 OR after->>'email' = $2) ORDER BY id",
        ghost,
        account.email,
    )
    assert [(r["target_user_id"] and str(r["target_user_id"])) for r in rows] == [None, account.id]


async def test_password_longer_than_128_is_422_without_hashing(client, monkeypatch, account):
    calls = []
    monkeypatch.setattr("manas360.services.auth.password_check.verify_password", lambda **kw: calls.append(kw))
    response = await client.post(URL, json={"email": account.email, "password": "x" * 129})
    assert response.status_code == 422 and calls == []


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.com"},
        {"password": PASSWORD},
        {"email": "a@example.com", "password": PASSWORD, "role": "admin"},
        {"email": "a\u0000@example.com", "password": PASSWORD},
        {"email": "x" * 321, "password": PASSWORD},
        {"email": 7, "password": PASSWORD},
    ],
)
async def test_incomplete_or_extra_login_fields_are_422(client, body):
    assert (await client.post(URL, json=body)).status_code == 422


async def test_outdated_bcrypt_cost_is_upgraded_on_next_login(client, pg, settings):
    account = await register(client)
    old_hash = await hash_password(password=PASSWORD, cost=5)
    await pg.execute("UPDATE user_accounts SET password_hash = $2 WHERE id = $1", account.id, old_hash)
    response = await client.post(URL, json={"email": account.email, "password": PASSWORD})
    assert response.status_code == 200
    new_hash = await pg.fetchval("SELECT password_hash FROM user_accounts WHERE id = $1", account.id)
    assert new_hash != old_hash and not needs_rehash(password_hash=new_hash, cost=settings.bcrypt_cost)
    assert (await client.post(URL, json={"email": account.email, "password": PASSWORD})).status_code == 200


async def test_a_user_whose_subscription_ended_still_logs_in_on_free(client, pg, account):
    await pg.execute(
        "INSERT INTO user_subscriptions (id, user_id, plan_id, status, starts_at, ends_at) "
        "SELECT gen_random_uuid(), $1, id, 'active', now() - interval '60 days', now() - interval '1 day' "
        "FROM subscription_plans WHERE name = 'premium'",
        account.id,
    )
    response = await client.post(URL, json={"email": account.email, "password": PASSWORD})
    assert response.status_code == 200 and response.json()["user"]["plan"] == "free"


class BcryptWork:
    """Stands in for the `bcrypt` module inside manas360.security.passwords: every hash and
    check runs for real and is recorded with its cost, from the salt or the stored hash
    (`$2b$06$...`). A check or hash at cost c is 2**c rounds of work."""

    def __init__(self) -> None:
        self.costs: list[int] = []  # appended from the bcrypt threads: list.append is atomic

    @staticmethod
    def _cost(salt_or_hash: bytes) -> int:
        return int(salt_or_hash.split(b"$")[2])

    def hashpw(self, password: bytes, salt: bytes) -> bytes:
        self.costs.append(self._cost(salt))
        return bcrypt.hashpw(password, salt)

    def checkpw(self, password: bytes, hashed: bytes) -> bool:
        self.costs.append(self._cost(hashed))
        return bcrypt.checkpw(password, hashed)

    gensalt = staticmethod(bcrypt.gensalt)

    def take(self) -> int:
        """The rounds done since the last call."""
        work, self.costs = sum(2**cost for cost in self.costs), []
        return work


@pytest.fixture(scope="module")
async def app_at_cost_6(environ, database, redis_raw):
    """The app with BCRYPT_COST=6, so hashes of an older, lower cost (4, 5) can exist."""
    async with running_app(load_settings({**environ, "BCRYPT_COST": "6"})) as app:
        yield app


@pytest.mark.parametrize("stored", ["cost 4", "cost 5", "cost 6", "another scheme"])
async def test_a_wrong_password_costs_the_work_of_an_unknown_email_whatever_the_stored_cost(
    app_at_cost_6, pg, monkeypatch, stored
):
    """After BCRYPT_COST rises, accounts that have not logged in since keep hashes of the old
    cost; a wrong password checked against one must not be faster than the dummy check an
    unknown email gets at the current cost, or timing tells which addresses exist."""
    async with client_for(app_at_cost_6) as client:
        account = await register(client)
        if stored == "another scheme":  # a plain bcrypt hash: verify_password rejects it without work
            old_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        else:
            old_hash = await hash_password(password=PASSWORD, cost=int(stored.split()[1]))
        await pg.execute("UPDATE user_accounts SET password_hash = $2 WHERE id = $1", account.id, old_hash)
        work = BcryptWork()
        monkeypatch.setattr(passwords, "bcrypt", work)
        unknown = await client.post(URL, json={"email": unique_email(), "password": "not the password"})
        unknown_work = work.take()
        wrong = await client.post(URL, json={"email": account.email, "password": "not the password"})
        wrong_work = work.take()
    assert unknown.status_code == wrong.status_code == 401
    assert unknown_work == 2**6
    assert wrong_work == unknown_work, f"{stored}: {wrong_work} rounds against {unknown_work}"
