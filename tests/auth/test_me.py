"""GET and PATCH /api/v1/me: the caller's profile, entitlements from PostgreSQL."""

from __future__ import annotations

import pytest

from manas360.services.access import catalog_defaults as reference
from tests.fixtures.accounts import API

URL = f"{API}/me"


async def _subscribe(pg, user_id, plan, *, ends_in_days=30):
    await pg.execute(
        "INSERT INTO user_subscriptions (id, user_id, plan_id, status, starts_at, ends_at) "
        "SELECT gen_random_uuid(), $1, id, 'active', now() - interval '1 day', now() + make_interval(days => $3) "
        "FROM subscription_plans WHERE name = $2",
        user_id,
        plan,
        ends_in_days,
    )


async def test_me_shows_the_user_with_permissions_features_and_subscription(client, account):
    response = await client.get(URL, headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in account.pair["user"]} == account.pair["user"]
    assert body["permissions"] == sorted(reference.ROLE_PERMISSIONS["user"])
    assert body["features"] == sorted(reference.plan_features("free"))
    assert body["subscription"] == {"plan": "free", "status": "active", "ends_at": None}


async def test_me_reflects_an_active_paid_subscription_and_its_end(client, pg, account):
    await _subscribe(pg, account.id, "premium")
    body = (await client.get(URL, headers=account.headers)).json()
    assert body["plan"] == "premium" and body["subscription"]["plan"] == "premium"
    assert "premium_dashboard" in body["features"] and body["subscription"]["ends_at"].endswith("+00:00")
    await pg.execute(
        "UPDATE user_subscriptions SET ends_at = now() - interval '1 second' WHERE user_id = $1", account.id
    )
    body = (await client.get(URL, headers=account.headers)).json()
    assert body["plan"] == "free" and "premium_dashboard" not in body["features"]


async def test_patch_me_changes_the_display_name(client, account):
    response = await client.patch(URL, headers=account.headers, json={"display_name": "  Meera "})
    assert response.status_code == 200 and response.json()["display_name"] == "Meera"
    assert (await client.get(URL, headers=account.headers)).json()["display_name"] == "Meera"


@pytest.mark.parametrize(
    "body",
    [
        {"display_name": "x", "role": "superadmin"},
        {"privilege_level": 100},
        {"display_name": "x", "plan": "enterprise"},
        {"email": "new@example.com"},
        {"display_name": "x" * 101},
        {},
    ],
)
async def test_patch_me_refuses_anything_but_a_valid_display_name(client, pg, account, body):
    response = await client.patch(URL, headers=account.headers, json=body)
    assert response.status_code == 422
    row = await pg.fetchrow(
        "SELECT u.display_name, u.email, r.name AS role FROM user_accounts u "
        "JOIN roles r ON r.id = u.role_id WHERE u.id = $1",
        account.id,
    )
    assert (row["display_name"], row["email"], row["role"]) == ("", account.email, "user")


async def test_me_requires_a_token(client):
    assert (await client.get(URL)).status_code == 401
    assert (await client.patch(URL, json={"display_name": "x"})).status_code == 401
