"""Races and rules found by the security reviews: a cache fill never outlives a newer
invalidation, administrative writes are checked against the actor's level as it is now,
accounts can be disabled (on the cached path too), the escalation rule for role
permissions, and a subscription change answers the new state."""

from __future__ import annotations

import asyncio

import pytest

import manas360.services.access.entitlements as entitlements
import manas360.services.ops.warmup as warmup
from manas360.services.ops.warmup import warm_cache
from tests.authz.conftest import make_admin
from tests.fixtures.accounts import API, login, register

ADMIN = f"{API}/admin"


async def _role(client, actor, target_id: str, role: str):
    return await client.put(f"{ADMIN}/users/{target_id}/role", json={"role": role}, headers=actor.headers)


async def _status(client, actor, target_id: str, status: str):
    return await client.put(f"{ADMIN}/users/{target_id}/status", json={"status": status}, headers=actor.headers)


async def _drop_context(redis_raw, settings, user_id: str) -> None:
    await redis_raw.delete(f"{settings.redis_prefix}{{u:{user_id}}}:ctx")


async def test_a_cache_fill_that_read_before_a_demotion_does_not_outlive_it(
    client, superadmin, redis_raw, settings, monkeypatch
):
    admin = await make_admin(client, superadmin)
    await _drop_context(redis_raw, settings, admin.id)
    read_done, demoted = asyncio.Event(), asyncio.Event()
    real_store = entitlements.store_user_states

    async def store_after_the_demotion(*args, **kwargs):
        read_done.set()  # PostgreSQL has been read: the role is still admin
        await demoted.wait()
        await real_store(*args, **kwargs)

    monkeypatch.setattr(entitlements, "store_user_states", store_after_the_demotion)
    in_flight = asyncio.ensure_future(client.get(f"{ADMIN}/users", headers=admin.headers))
    await asyncio.wait_for(read_done.wait(), 10)
    monkeypatch.setattr(entitlements, "store_user_states", real_store)
    assert (await _role(client, superadmin, admin.id, "user")).status_code == 200
    demoted.set()
    assert (await in_flight).status_code == 200  # concurrent with the demotion: either answer is right
    after = await client.get(f"{ADMIN}/users", headers=admin.headers)
    assert after.status_code == 403 and after.json()["error"] == "InsufficientPrivileges"


async def test_warm_cache_never_overwrites_a_change_that_committed_while_it_ran(
    db, client, superadmin, redis_raw, settings, app, monkeypatch
):
    admin = await make_admin(client, superadmin)
    await _drop_context(redis_raw, settings, admin.id)
    real_store = warmup.store_user_states

    async def demote_then_store(*args, **kwargs):
        # warm-cache has read PostgreSQL (admin); the demotion commits and invalidates now.
        assert (await _role(client, superadmin, admin.id, "user")).status_code == 200
        await real_store(*args, **kwargs)

    monkeypatch.setattr(warmup, "store_user_states", demote_then_store)
    await warm_cache(
        db=app.ctx.deps.db, settings=settings, store=app.ctx.deps.store, clock=app.ctx.deps.clock, batch_size=100_000
    )
    monkeypatch.setattr(warmup, "store_user_states", real_store)
    after = await client.get(f"{ADMIN}/users", headers=admin.headers)
    assert after.status_code == 403 and after.json()["error"] == "InsufficientPrivileges"


async def test_an_admin_write_is_checked_against_the_actors_level_now(client, superadmin, member, pg):
    admin = await make_admin(client, superadmin)
    assert (await client.get(f"{ADMIN}/users", headers=admin.headers)).status_code == 200  # context cached
    # The demotion has committed; the cached context (and so the guard) still says admin.
    await pg.execute(
        "UPDATE user_accounts SET role_id = (SELECT id FROM roles WHERE name = 'user') WHERE id = $1", admin.id
    )
    for response in (
        await _role(client, admin, member.id, "guest"),
        await client.put(f"{ADMIN}/users/{member.id}/subscription", json={"plan": "basic"}, headers=admin.headers),
        await client.post(f"{ADMIN}/users/{member.id}/revoke-sessions", headers=admin.headers),
        await client.post(f"{ADMIN}/users/{member.id}/unlock", headers=admin.headers),
        await _status(client, admin, member.id, "disabled"),
    ):
        assert response.status_code == 403 and response.json()["error"] == "InsufficientPrivileges", response.text
    role = await pg.fetchval(
        "SELECT r.name FROM user_accounts u JOIN roles r ON r.id = u.role_id WHERE u.id = $1", member.id
    )
    assert role == "user"
    assert await pg.fetchval("SELECT status FROM user_accounts WHERE id = $1", member.id) == "active"


async def test_writes_racing_the_actors_demotion_all_commit_before_it(client, superadmin, pg):
    admin = await make_admin(client, superadmin)
    targets = [await register(client) for _ in range(10)]
    writes = [_role(client, admin, target.id, role) for target in targets for role in ("guest", "subscriber")]
    results = await asyncio.gather(*writes, _role(client, superadmin, admin.id, "user"))
    *responses, demotion = results
    assert demotion.status_code == 200
    assert {r.status_code for r in responses} <= {200, 403}
    demoted_at = await pg.fetchval(
        "SELECT id FROM audit_logs WHERE action = 'admin.role_changed' AND target_user_id = $1", admin.id
    )
    accepted = await pg.fetch(
        "SELECT id FROM audit_logs WHERE action = 'admin.role_changed' AND actor_id = $1", admin.id
    )
    assert len(accepted) == sum(r.status_code == 200 for r in responses)
    # Each accepted write held the actor's row before the demotion took it: none after.
    assert all(row["id"] < demoted_at for row in accepted)
    later = await _role(client, admin, targets[0].id, "user")
    assert later.status_code == 403


async def test_disabling_an_account_refuses_its_tokens_login_and_refresh(client, admin, pg):
    user = await register(client)
    assert (await client.get(f"{API}/me", headers=user.headers)).status_code == 200
    response = await _status(client, admin, user.id, "disabled")
    assert response.status_code == 200 and response.json()["status"] == "disabled"
    for _ in range(2):  # the miss that refills the cache, then the cached path
        denied = await client.get(f"{API}/me", headers=user.headers)
        assert denied.status_code == 403 and denied.json()["error"] == "AccountDisabled"
    login_ok = await client.post(f"{API}/auth/login", json={"email": user.email, "password": user.password})
    assert login_ok.status_code == 403 and login_ok.json()["error"] == "AccountDisabled"
    assert "access_token" not in login_ok.json()
    wrong = await client.post(f"{API}/auth/login", json={"email": user.email, "password": "not the password"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "InvalidCredentials"
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 403 and refreshed.json()["error"] == "AccountDisabled"
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", user.id) == 0
    entry = await pg.fetchrow(
        "SELECT actor_id, before, after FROM audit_logs WHERE action = 'admin.status_changed' AND target_user_id = $1",
        user.id,
    )
    assert str(entry["actor_id"]) == admin.id and '"disabled"' in entry["after"]

    assert (await _status(client, admin, user.id, "active")).json()["status"] == "active"
    again = await login(client, user)
    assert (await client.get(f"{API}/me", headers=again.headers)).status_code == 200
    old = await client.get(f"{API}/me", headers=user.headers)
    assert old.status_code == 401 and old.json()["error"] == "TokenRevoked"


async def test_the_cached_context_carries_the_status(client, member, pg, redis_raw, settings):
    """Disabled in PostgreSQL with no session revoked: the refill and the cached answer both
    refuse (the token itself is not revoked, so only the status check stands in the way)."""
    assert (await client.get(f"{API}/dashboard", headers=member.headers)).status_code == 200
    await pg.execute("UPDATE user_accounts SET status = 'disabled' WHERE id = $1", member.id)
    await _drop_context(redis_raw, settings, member.id)
    try:
        for _ in range(3):
            response = await client.get(f"{API}/dashboard", headers=member.headers)
            assert response.status_code == 403 and response.json()["error"] == "AccountDisabled"
        cached = await redis_raw.hget(f"{settings.redis_prefix}{{u:{member.id}}}:ctx", "status")
        assert cached == "disabled"
    finally:
        await pg.execute("UPDATE user_accounts SET status = 'active' WHERE id = $1", member.id)


async def test_status_changes_follow_the_escalation_rule(client, superadmin, admin, member):
    peer = await make_admin(client, superadmin)
    for actor, target in ((admin, peer), (admin, superadmin), (admin, admin)):
        response = await _status(client, actor, target.id, "disabled")
        assert response.status_code == 403 and response.json()["error"] == "PrivilegeEscalationPrevented"
    assert (await _status(client, admin, member.id, "frozen")).status_code == 422
    assert (await _status(client, admin, "00000000-0000-0000-0000-000000000000", "disabled")).status_code == 404
    assert (await _status(client, member, member.id, "disabled")).json()["error"] == "InsufficientPrivileges"


@pytest.fixture
async def role_manager(client, superadmin):
    """An admin whose role was granted roles.manage (restored afterwards)."""
    roles = (await client.get(f"{ADMIN}/roles", headers=superadmin.headers)).json()["items"]
    original = {role["name"]: role["permissions"] for role in roles}
    granted = await client.put(
        f"{ADMIN}/roles/admin/permissions",
        json={"permissions": original["admin"] + ["roles.manage"]},
        headers=superadmin.headers,
    )
    assert granted.status_code == 200, granted.text
    yield await make_admin(client, superadmin), original
    for name in ("admin", "user"):
        await client.put(
            f"{ADMIN}/roles/{name}/permissions", json={"permissions": original[name]}, headers=superadmin.headers
        )


async def test_role_permissions_follow_the_escalation_rule(client, superadmin, role_manager):
    manager, original = role_manager
    own_role = await client.put(
        f"{ADMIN}/roles/admin/permissions", json={"permissions": original["admin"]}, headers=manager.headers
    )
    assert own_role.status_code == 403 and own_role.json()["error"] == "PrivilegeEscalationPrevented"
    not_held = await client.put(
        f"{ADMIN}/roles/user/permissions",
        json={"permissions": original["user"] + ["plans.manage"]},
        headers=manager.headers,
    )
    assert not_held.status_code == 403 and not_held.json()["error"] == "PrivilegeEscalationPrevented"
    held = await client.put(
        f"{ADMIN}/roles/user/permissions",
        json={"permissions": original["user"] + ["users.read"]},
        headers=manager.headers,
    )
    assert held.status_code == 200 and "users.read" in held.json()["permissions"]
    top = await client.put(
        f"{ADMIN}/roles/superadmin/permissions",
        json={"permissions": original["superadmin"]},
        headers=superadmin.headers,
    )
    assert top.status_code == 403 and top.json()["error"] == "PrivilegeEscalationPrevented"


async def test_a_subscription_change_answers_the_new_plan(client, superadmin, member):
    response = await client.put(
        f"{ADMIN}/users/{member.id}/subscription", json={"plan": "premium"}, headers=superadmin.headers
    )
    assert response.status_code == 200 and response.json()["plan"] == "premium"
    detail = (await client.get(f"{ADMIN}/users/{member.id}", headers=superadmin.headers)).json()
    assert detail["plan"] == "premium" and detail["subscription"]["status"] == "active"
    past = await client.put(
        f"{ADMIN}/users/{member.id}/subscription",
        json={"plan": "basic", "ends_at": "2001-01-01T00:00:00Z"},
        headers=superadmin.headers,
    )
    assert past.status_code == 422 and "ends_at" in past.json()["fields"]
