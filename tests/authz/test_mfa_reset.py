"""POST /api/v1/admin/users/{id}/mfa/reset: `users.write`, only on users below the actor, and
disabling an account voids its pending MFA logins."""

from __future__ import annotations

import json
import uuid

from tests.auth.mfa_helpers import enable, mfa_token, verify
from tests.authz.conftest import make_admin
from tests.fixtures.accounts import PASSWORD, register

ADMIN_API = "/api/v1/admin"
LOGIN = "/api/v1/auth/login"


def _reset_url(user_id: str) -> str:
    return f"{ADMIN_API}/users/{user_id}/mfa/reset"


async def test_an_admin_turns_a_members_mfa_off(client, pg, admin, member):
    enabled = await enable(client, member)
    token = await mfa_token(client, member)
    response = await client.post(_reset_url(member.id), headers=admin.headers)
    assert response.status_code == 204
    me = await client.get("/api/v1/me", headers=member.headers)  # a security event: every session is revoked
    assert (me.status_code, me.json()["error"]) == (401, "TokenRevoked")
    login = await client.post(LOGIN, json={"email": member.email, "password": PASSWORD})
    assert login.status_code == 200 and login.json()["user"]["mfa_enabled"] is False
    voided = await verify(client, token, enabled.code())
    assert (voided.status_code, voided.json()["error"]) == (401, "InvalidToken")
    assert await pg.fetchval("SELECT count(*) FROM mfa_totp WHERE user_id = $1", member.id) == 0
    assert await pg.fetchval("SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1", member.id) == 0
    entry = await pg.fetchrow(
        "SELECT actor_id, before, after FROM audit_logs WHERE target_user_id = $1 AND action = 'admin.mfa_reset'",
        member.id,
    )
    assert str(entry["actor_id"]) == admin.id
    assert json.loads(entry["before"]) == {"mfa_enabled": True} and json.loads(entry["after"]) == {"mfa_enabled": False}


async def test_reset_is_refused_on_equals_superiors_and_oneself(client, superadmin, admin):
    peer = await make_admin(client, superadmin)
    await enable(client, peer)
    for target in (peer.id, superadmin.id, admin.id):
        response = await client.post(_reset_url(target), headers=admin.headers)
        assert (response.status_code, response.json()["error"]) == (403, "PrivilegeEscalationPrevented"), target
    assert (await client.get("/api/v1/me", headers=peer.headers)).json()["mfa_enabled"] is True
    # The superadmin is above an admin.
    assert (await client.post(_reset_url(peer.id), headers=superadmin.headers)).status_code == 204


async def test_reset_needs_users_write_and_an_admin_level(client, member):
    other = await register(client)
    response = await client.post(_reset_url(other.id), headers=member.headers)
    assert response.status_code == 403


async def test_reset_of_an_unknown_user_is_404(client, admin):
    for target in (str(uuid.uuid4()), "not-a-uuid"):
        assert (await client.post(_reset_url(target), headers=admin.headers)).status_code == 404


async def test_reset_of_a_user_without_mfa_is_204(client, admin, member):
    assert (await client.post(_reset_url(member.id), headers=admin.headers)).status_code == 204


async def test_disabling_an_account_voids_its_mfa_tokens(client, pg, admin, member):
    enabled = await enable(client, member)
    token = await mfa_token(client, member)
    disabled = await client.put(
        f"{ADMIN_API}/users/{member.id}/status", json={"status": "disabled"}, headers=admin.headers
    )
    assert disabled.status_code == 200
    enabled_again = await client.put(
        f"{ADMIN_API}/users/{member.id}/status", json={"status": "active"}, headers=admin.headers
    )
    assert enabled_again.status_code == 200
    response = await verify(client, token, enabled.code())
    assert (response.status_code, response.json()["error"]) == (401, "InvalidToken")


async def test_a_disabled_accounts_right_password_and_code_get_no_tokens(client, pg, member):
    enabled = await enable(client, member)
    token = await mfa_token(client, member)
    await pg.execute("UPDATE user_accounts SET status = 'disabled' WHERE id = $1", member.id)
    response = await client.post(LOGIN, json={"email": member.email, "password": PASSWORD})
    assert (response.status_code, response.json()["error"]) == (403, "AccountDisabled")
    assert "mfa_token" not in response.json()
    late = await verify(client, token, enabled.code())
    assert (late.status_code, late.json()["error"]) == (403, "AccountDisabled")
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", member.id) == 1
