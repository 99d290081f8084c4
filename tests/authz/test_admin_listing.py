"""The admin API at its edges: cursors we never issued and impossible subscription ends are
422 (never a 500), the audit log pages through every entry exactly once, analytics counts
exactly."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from tests.fixtures.accounts import API as V1
from tests.fixtures.accounts import login, register

API = f"{V1}/admin"
SOME_ID = str(uuid.uuid4())


def encode_cursor(position) -> str:
    """A cursor as the service would encode one, but with any JSON (orjson refuses huge ints)."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).rstrip(b"=").decode("ascii")


def _assert_cursor_422(response) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "ValidationError" and list(body["fields"]) == ["cursor"]


@pytest.mark.parametrize(
    "created_at",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
        "9999-12-31T23:59:59-23:59",  # after year 9999 once in UTC
        "0001-01-01T00:00:00.000001+00:01",
        "2026-11-25T18:00:00",  # no offset: not a cursor we issue
        "not a date",
        20261125,
        None,
    ],
)
async def test_users_cursor_with_an_impossible_time_is_422(client, admin, created_at):
    cursor = encode_cursor([created_at, SOME_ID])
    _assert_cursor_422(await client.get(f"{API}/users", params={"cursor": cursor}, headers=admin.headers))


async def test_users_cursor_at_the_ends_of_the_calendar_is_an_ordinary_page(client, admin):
    for created_at in ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"):
        cursor = encode_cursor([created_at, SOME_ID])
        response = await client.get(f"{API}/users", params={"cursor": cursor}, headers=admin.headers)
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("last_id", [2**63, -(2**63) - 1, 10**30, -(10**30), True, False, 1.5, "7", None])
async def test_audit_cursor_beyond_bigint_or_not_an_integer_is_422(client, admin, last_id):
    cursor = encode_cursor([last_id])
    _assert_cursor_422(await client.get(f"{API}/audit-logs", params={"cursor": cursor}, headers=admin.headers))


async def test_audit_cursor_at_the_ends_of_bigint_is_an_ordinary_page(client, admin):
    for last_id in (2**63 - 1, -(2**63)):
        cursor = encode_cursor([last_id])
        response = await client.get(f"{API}/audit-logs", params={"cursor": cursor}, headers=admin.headers)
        assert response.status_code == 200, response.text


async def test_audit_log_pages_hold_every_entry_exactly_once(client, admin, member, pg):
    for _ in range(7):  # each login is one more entry about `member`
        await login(client, member)
    expected = {
        row["id"] for row in await pg.fetch("SELECT id FROM audit_logs WHERE target_user_id = $1", uuid.UUID(member.id))
    }
    assert len(expected) >= 8
    seen, cursor, pages = [], None, 0
    while True:
        params = {"user_id": member.id, "limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"{API}/audit-logs", params=params, headers=admin.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert 0 < len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 20, "the cursor does not advance"
    assert len(seen) == len(set(seen)), "an entry was repeated across pages"
    assert set(seen) == expected
    assert seen == sorted(seen, reverse=True)


async def test_analytics_counts_logins_and_failed_logins_exactly(client, admin):
    async def last_24h() -> dict:
        response = await client.get(f"{API}/analytics", headers=admin.headers)
        assert response.status_code == 200, response.text
        return response.json()["last_24h"]

    accounts = [await register(client) for _ in range(3)]
    before = await last_24h()
    for account in accounts[:2]:  # two successes
        await login(client, account)
    for account in accounts:  # three failures, one per account (far from any lockout)
        response = await client.post(f"{V1}/auth/login", json={"email": account.email, "password": "wrong password!"})
        assert response.status_code == 401
    after = await last_24h()
    assert after["logins"] - before["logins"] == 2
    assert after["failed_logins"] - before["failed_logins"] == 3
    assert after["lockouts"] == before["lockouts"]


@pytest.mark.parametrize(
    "ends_at",
    [
        "9999-12-31T23:59:59-23:59",  # past year 9999 once in UTC
        "0001-01-01T00:00:00+23:59",  # before year 1 once in UTC
        "9000-01-01T00:00:00+00:00",  # exists, but no subscription sanely ends then
        "8999-12-31T23:30:00-01:00",  # the same, reached through its offset
    ],
)
async def test_subscription_end_beyond_utc_or_far_future_is_422(client, superadmin, member, ends_at):
    response = await client.put(
        f"{API}/users/{member.id}/subscription",
        json={"plan": "premium", "ends_at": ends_at},
        headers=superadmin.headers,
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "ValidationError" and list(body["fields"]) == ["ends_at"]


async def test_subscription_end_with_an_offset_is_kept_as_that_instant(client, superadmin, member):
    response = await client.put(
        f"{API}/users/{member.id}/subscription",
        json={"plan": "premium", "ends_at": "8999-12-31T22:00:00-01:00"},
        headers=superadmin.headers,
    )
    assert response.status_code == 200, response.text
    detail = (await client.get(f"{API}/users/{member.id}", headers=superadmin.headers)).json()
    assert detail["subscription"]["ends_at"].startswith("8999-12-31T23:00:00")
