"""The administration API: escalation rule, audit trail, pagination, unlock and revoke."""

from __future__ import annotations

import asyncio

import pytest

from tests.authz.conftest import make_admin
from tests.fixtures.accounts import API as API_ROOT
from tests.fixtures.accounts import register

API = f"{API_ROOT}/admin"


async def _role(client, actor, target_id: str, role: str):
    return await client.put(f"{API}/users/{target_id}/role", json={"role": role}, headers=actor.headers)


async def test_admin_assigns_roles_below_their_own_to_users_below_them(client, admin, member):
    response = await _role(client, admin, member.id, "subscriber")
    assert response.status_code == 200
    assert response.json()["role"] == "subscriber" and response.json()["privilege_level"] == 50


@pytest.mark.parametrize("new_role", ["admin", "superadmin"])
async def test_admin_cannot_grant_their_own_level_or_above(client, admin, member, new_role):
    response = await _role(client, admin, member.id, new_role)
    assert response.status_code == 403 and response.json()["error"] == "PrivilegeEscalationPrevented"


async def test_nobody_changes_their_own_role(client, admin, superadmin):
    for actor, role in ((admin, "user"), (superadmin, "admin")):
        response = await _role(client, actor, actor.id, role)
        assert response.status_code == 403 and response.json()["error"] == "PrivilegeEscalationPrevented"


async def test_admin_cannot_act_on_a_peer(client, superadmin):
    first, second = await make_admin(client, superadmin), await make_admin(client, superadmin)
    for response in (
        await _role(client, first, second.id, "user"),
        await client.post(f"{API}/users/{second.id}/revoke-sessions", headers=first.headers),
        await client.put(f"{API}/users/{second.id}/subscription", json={"plan": "basic"}, headers=first.headers),
    ):
        assert response.status_code == 403 and response.json()["error"] == "PrivilegeEscalationPrevented"


async def test_superadmin_may_assign_any_role_but_no_superadmin_role_changes(client, superadmin, member, pg):
    promoted = await _role(client, superadmin, member.id, "superadmin")
    assert promoted.status_code == 200 and promoted.json()["privilege_level"] == 100
    demoted = await _role(client, superadmin, member.id, "user")
    assert demoted.status_code == 403 and demoted.json()["error"] == "PrivilegeEscalationPrevented"
    await pg.execute(
        "UPDATE user_accounts SET role_id = (SELECT id FROM roles WHERE name = 'user') WHERE id = $1", member.id
    )


async def test_unknown_role_and_unknown_user(client, superadmin, member):
    assert (await _role(client, superadmin, member.id, "emperor")).status_code == 422
    for target in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        assert (await _role(client, superadmin, target, "user")).status_code == 404
        assert (await client.get(f"{API}/users/{target}", headers=superadmin.headers)).status_code == 404


async def test_each_write_is_audited_with_before_and_after(client, admin, member):
    await _role(client, admin, member.id, "subscriber")
    response = await client.get(
        f"{API}/audit-logs", params={"user_id": member.id, "action": "admin.role_changed"}, headers=admin.headers
    )
    assert response.status_code == 200
    entry = response.json()["items"][0]
    assert entry["actor_id"] == admin.id and entry["target_user_id"] == member.id
    assert entry["before"] == {"role": "user"} and entry["after"] == {"role": "subscriber"}
    assert entry["request_id"]


async def test_user_detail_shows_lock_and_subscription(client, admin, member):
    detail = (await client.get(f"{API}/users/{member.id}", headers=admin.headers)).json()
    assert detail["email"] == member.email and detail["locked_until"] is None
    assert detail["subscription"]["plan"] == "free"


async def test_listing_pages_are_stable_while_users_are_added(client, admin):
    marker = f"pager{id(client)}"
    for i in range(7):
        await register(client, display_name=f"{marker}-{i}")
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "q": marker.upper()}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(f"{API}/users", params=params, headers=admin.headers)).json()
        seen += [item["display_name"] for item in page["items"]]
        await register(client, display_name=f"{marker}-late")  # inserted while paging
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"{marker}-{i}" for i in reversed(range(7))]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": -5},
        {"limit": "x"},
        {"limit": 10**30},
        {"cursor": "garbage!"},
        {"cursor": "W10"},
    ],
)
async def test_bad_pagination_is_422(client, admin, params):
    response = await client.get(f"{API}/users", params=params, headers=admin.headers)
    assert response.status_code == 422 and response.json()["error"] == "ValidationError"


async def test_unlock_lifts_a_lock_at_once(client, admin, member, pg):
    await pg.execute("UPDATE user_accounts SET locked_until = now() + interval '10 minutes' WHERE id = $1", member.id)
    locked = await client.post("/api/v1/auth/login", json={"email": member.email, "password": member.password})
    assert locked.status_code == 423
    assert (await client.post(f"{API}/users/{member.id}/unlock", headers=admin.headers)).status_code == 204
    ok = await client.post("/api/v1/auth/login", json={"email": member.email, "password": member.password})
    assert ok.status_code == 200


async def test_revoke_sessions_kills_the_users_tokens(client, admin, member):
    assert (await client.get("/api/v1/me", headers=member.headers)).status_code == 200
    assert (await client.post(f"{API}/users/{member.id}/revoke-sessions", headers=admin.headers)).status_code == 204
    response = await client.get("/api/v1/me", headers=member.headers)
    assert response.status_code == 401 and response.json()["error"] == "TokenRevoked"
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": member.refresh_token})
    assert refreshed.status_code == 401


async def test_concurrent_role_changes_leave_one_consistent_answer(client, admin, member, pg):
    responses = await asyncio.gather(
        *(_role(client, admin, member.id, role) for role in ("guest", "subscriber", "user", "guest", "subscriber"))
    )
    assert all(r.status_code == 200 for r in responses)
    final = await pg.fetchval(
        "SELECT r.name FROM user_accounts u JOIN roles r ON r.id = u.role_id WHERE u.id = $1", member.id
    )
    me = (await client.get("/api/v1/me", headers=member.headers)).json()
    assert me["role"] == final
