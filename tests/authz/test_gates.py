"""Each gate allows and denies, with live entitlements: a change applies to the very next
request made with the token the user already holds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.authz.conftest import make_admin
from tests.fixtures.accounts import API, register
from tests.fixtures.environment import delete_prefixed_keys


async def _set_plan(client, superadmin, user_id: str, plan: str, **extra):
    response = await client.put(
        f"{API}/admin/users/{user_id}/subscription", json={"plan": plan, **extra}, headers=superadmin.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_dashboard_needs_dashboard_read(client, member, superadmin):
    assert (await client.get(f"{API}/dashboard", headers=member.headers)).status_code == 200
    response = await client.put(
        f"{API}/admin/users/{member.id}/role", json={"role": "guest"}, headers=superadmin.headers
    )
    assert response.status_code == 200
    denied = await client.get(f"{API}/dashboard", headers=member.headers)
    assert denied.status_code == 403 and denied.json()["error"] == "PermissionDenied"


async def test_premium_dashboard_names_the_cheapest_upgrade_then_opens_after_a_plan_change(client, member, superadmin):
    denied = await client.get(f"{API}/premium/dashboard", headers=member.headers)
    assert denied.status_code == 403
    body = denied.json()
    assert body["error"] == "FeatureNotAvailable"
    assert body["upgrade"] == {"plan": "premium", "price_cents": 1999}
    await _set_plan(client, superadmin, member.id, "professional")
    allowed = await client.get(f"{API}/premium/dashboard", headers=member.headers)
    assert allowed.status_code == 200 and allowed.json()["plan"] == "professional"
    await _set_plan(client, superadmin, member.id, "free")
    assert (await client.get(f"{API}/premium/dashboard", headers=member.headers)).status_code == 403


async def test_analytics_needs_analytics_read_and_counts_for_real(client, member, superadmin):
    denied = await client.get(f"{API}/admin/analytics", headers=member.headers)
    assert denied.status_code == 403 and denied.json()["error"] == "PermissionDenied"
    admin = await make_admin(client, superadmin)
    before = (await client.get(f"{API}/admin/analytics", headers=admin.headers)).json()
    await register(client)
    after = (await client.get(f"{API}/admin/analytics", headers=admin.headers)).json()
    assert after["users"]["total"] == before["users"]["total"] + 1
    assert after["users"]["by_role"]["user"] == before["users"]["by_role"]["user"] + 1
    assert after["users"]["by_plan"]["free"] == before["users"]["by_plan"]["free"] + 1
    assert after["last_24h"]["logins"] >= before["last_24h"]["logins"]
    assert set(after["users"]["by_plan"]) == {"free", "basic", "premium", "professional", "enterprise"}


async def test_admin_routes_check_privilege_before_permission(client, member, admin):
    low = await client.get(f"{API}/admin/users", headers=member.headers)
    assert low.status_code == 403 and low.json()["error"] == "InsufficientPrivileges"
    lacking = await client.put(f"{API}/admin/roles/user/permissions", json={"permissions": []}, headers=admin.headers)
    assert lacking.status_code == 403 and lacking.json()["error"] == "PermissionDenied"
    assert (await client.get(f"{API}/admin/users", headers=admin.headers)).status_code == 200


async def test_no_token_and_bad_tokens_are_401_before_any_gate(client):
    assert (await client.get(f"{API}/dashboard")).json()["error"] == "Unauthorized"
    bad = await client.get(f"{API}/dashboard", headers={"authorization": "Bearer not.a.token"})
    assert bad.status_code == 401 and bad.json()["error"] == "InvalidToken"


async def test_a_role_permission_change_applies_to_holders_next_request(client, member, superadmin):
    roles = (await client.get(f"{API}/admin/roles", headers=superadmin.headers)).json()["items"]
    original = next(r for r in roles if r["name"] == "user")["permissions"]
    try:
        response = await client.put(
            f"{API}/admin/roles/user/permissions",
            json={"permissions": [p for p in original if p != "dashboard.read"]},
            headers=superadmin.headers,
        )
        assert response.status_code == 200 and "dashboard.read" not in response.json()["permissions"]
        assert (await client.get(f"{API}/dashboard", headers=member.headers)).status_code == 403
        # /me tells the same story on the same next request (no copy of its own).
        assert "dashboard.read" not in (await client.get(f"{API}/me", headers=member.headers)).json()["permissions"]
    finally:
        await client.put(
            f"{API}/admin/roles/user/permissions", json={"permissions": original}, headers=superadmin.headers
        )
    assert (await client.get(f"{API}/dashboard", headers=member.headers)).status_code == 200
    assert (await client.get(f"{API}/me", headers=member.headers)).json()["permissions"] == sorted(original)


async def test_a_plan_feature_change_applies_to_subscribers_next_request(client, member, superadmin):
    await _set_plan(client, superadmin, member.id, "basic")
    assert (await client.get(f"{API}/premium/dashboard", headers=member.headers)).status_code == 403
    plans = (await client.get(f"{API}/plans")).json()["items"]
    original = next(p for p in plans if p["name"] == "basic")["features"]
    try:
        response = await client.put(
            f"{API}/admin/plans/basic/features",
            json={"features": original + ["premium_dashboard"]},
            headers=superadmin.headers,
        )
        assert response.status_code == 200 and "premium_dashboard" in response.json()["features"]
        assert (await client.get(f"{API}/premium/dashboard", headers=member.headers)).status_code == 200
        assert "premium_dashboard" in (await client.get(f"{API}/me", headers=member.headers)).json()["features"]
        public = (await client.get(f"{API}/plans")).json()["items"]
        assert "premium_dashboard" in next(p for p in public if p["name"] == "basic")["features"]
    finally:
        await client.put(f"{API}/admin/plans/basic/features", json={"features": original}, headers=superadmin.headers)
    assert (await client.get(f"{API}/premium/dashboard", headers=member.headers)).status_code == 403


async def test_subscription_expiry_downgrades_without_any_job(client, member, superadmin):
    ends_at = datetime.now(UTC) + timedelta(seconds=1.5)
    # Whole milliseconds: the cached context keeps the end in ms, so the downgrade may come
    # up to 1 ms before a microsecond-precise end (the test once compared those, 1 run in 10).
    ends_at = ends_at.replace(microsecond=ends_at.microsecond // 1000 * 1000)
    await _set_plan(client, superadmin, member.id, "premium", ends_at=ends_at.isoformat())
    assert (await client.get(f"{API}/premium/dashboard", headers=member.headers)).status_code == 200
    deadline = time.monotonic() + 5
    status = 200
    while status == 200 and time.monotonic() < deadline:
        status = (await client.get(f"{API}/premium/dashboard", headers=member.headers)).status_code
    assert status == 403 and datetime.now(UTC) >= ends_at
    me = (await client.get(f"{API}/me", headers=member.headers)).json()
    assert me["plan"] == "free" and "premium_dashboard" not in me["features"]


async def test_flushing_redis_between_requests_changes_no_decision(client, redis_raw, settings, member, superadmin):
    await _set_plan(client, superadmin, member.id, "premium")
    guest = await register(client)
    await client.put(f"{API}/admin/users/{guest.id}/role", json={"role": "guest"}, headers=superadmin.headers)
    paths = [f"{API}/dashboard", f"{API}/premium/dashboard", f"{API}/admin/analytics"]

    async def decisions():
        return [
            (await client.get(path, headers=account.headers)).status_code
            for account in (member, guest)
            for path in paths
        ]

    before = await decisions()
    assert before == [200, 200, 403, 403, 403, 403]
    await delete_prefixed_keys(redis_raw, settings.redis_prefix)
    assert await decisions() == before
    assert await decisions() == before  # and again, now from the refilled cache


async def test_me_shows_live_permissions_features_and_subscription(client, member, superadmin):
    ends_at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    await _set_plan(client, superadmin, member.id, "premium", ends_at=ends_at.isoformat())
    me = (await client.get(f"{API}/me", headers=member.headers)).json()
    assert me["plan"] == "premium" and "premium_dashboard" in me["features"]
    assert "dashboard.read" in me["permissions"] and "users.read" not in me["permissions"]
    assert me["subscription"]["plan"] == "premium"
    assert datetime.fromisoformat(me["subscription"]["ends_at"]) == ends_at


@pytest.mark.parametrize(
    "body",
    [
        {"plan": "gold"},
        {"plan": "premium", "ends_at": "2020-01-01T00:00:00Z"},
        {"plan": "premium", "ends_at": "2099-01-01T00:00:00"},
        {"plan": "premium", "x": 1},
    ],
)
async def test_invalid_subscription_changes_are_422(client, member, superadmin, body):
    response = await client.put(f"{API}/admin/users/{member.id}/subscription", json=body, headers=superadmin.headers)
    assert response.status_code == 422 and response.json()["error"] == "ValidationError"
