"""Deleting an account: DELETE /me schedules it (step-up), every way in answers 403
AccountPendingDeletion until the owner cancels with the mailed link and the password (through
the one gate) or an administrator does; an administrator's deletion mails no link."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from manas360.edge.policies import GUARDED_MARK
from tests.fixtures.accounts import API, PASSWORD, bearer, register
from tests.fixtures.counting import counting
from tests.fixtures.outbox import mail_bodies


def _cancel_token(body: str) -> str:
    match = re.search(r"/cancel-deletion#token=([A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


async def _delete(client, account):
    response = await client.delete(f"{API}/me", headers=account.headers)
    assert response.status_code == 202, response.text
    return response.json()


async def test_deletion_refuses_every_way_in_until_the_owner_cancels(client, pg, settings):
    account = await register(client)
    body = await _delete(client, account)
    assert body["deletion_at"]
    row = await pg.fetchrow("SELECT status, deletion_at FROM user_accounts WHERE id = $1", account.id)
    assert row["status"] == "pending_deletion" and row["deletion_at"] is not None
    refused = [
        await client.get(f"{API}/me", headers=account.headers),
        await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD}),
        await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token}),
    ]
    assert [(r.status_code, r.json()["error"]) for r in refused] == [(403, "AccountPendingDeletion")] * 3
    # A reset request for a pending account sends nothing.
    before = await pg.fetchval("SELECT count(*) FROM outbox WHERE user_id = $1", account.id)
    assert (await client.post(f"{API}/auth/password-reset", json={"email": account.email})).status_code == 202
    assert await pg.fetchval("SELECT count(*) FROM outbox WHERE user_id = $1", account.id) == before

    [mail] = await mail_bodies(pg, settings, user_id=account.id, kind="deletion_scheduled")
    token = _cancel_token(mail)
    wrong = await client.post(
        f"{API}/auth/account-deletion/cancel", json={"token": token, "password": "not the password"}
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "InvalidCredentials")
    ok = await client.post(f"{API}/auth/account-deletion/cancel", json={"token": token, "password": PASSWORD})
    assert ok.status_code == 200, ok.text
    assert ok.json()["user"]["status"] == "active"
    assert (await client.get(f"{API}/me", headers=bearer(ok.json()["access_token"]))).status_code == 200
    again = await client.post(f"{API}/auth/account-deletion/cancel", json={"token": token, "password": PASSWORD})
    assert (again.status_code, again.json()["error"]) == (401, "InvalidToken")
    # The old session stays revoked.
    assert (await client.get(f"{API}/me", headers=account.headers)).status_code == 401


async def test_deletion_needs_a_fresh_credential(client, pg):
    account = await register(client)
    await pg.execute("UPDATE sessions SET auth_time = auth_time - interval '1 hour' WHERE user_id = $1", account.id)
    stale = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    response = await client.delete(f"{API}/me", headers=bearer(stale.json()["access_token"]))
    assert (response.status_code, response.json()["error"]) == (403, "ReauthenticationRequired")
    assert await pg.fetchval("SELECT status FROM user_accounts WHERE id = $1", account.id) == "active"


@pytest.mark.parametrize(
    ("before", "back", "expected"),
    [
        ("active", "active", 200),
        ("disabled", "disabled", 200),
        ("active", "disabled", 422),
        ("disabled", "active", 422),
    ],
)
async def test_an_administrator_schedules_without_a_link_and_cancels_to_the_status_before(
    client, pg, settings, superadmin_headers, before, back, expected
):
    account = await register(client)
    if before == "disabled":
        r = await client.put(
            f"{API}/admin/users/{account.id}/status", json={"status": "disabled"}, headers=superadmin_headers
        )
        assert r.status_code == 200
    r = await client.put(
        f"{API}/admin/users/{account.id}/status", json={"status": "pending_deletion"}, headers=superadmin_headers
    )
    assert r.status_code == 200 and r.json()["status"] == "pending_deletion", r.text
    [mail] = await mail_bodies(pg, settings, user_id=account.id, kind="deletion_scheduled")
    assert "cancel-deletion#token=" not in mail
    listed = await client.get(f"{API}/admin/users", params={"q": account.email}, headers=superadmin_headers)
    assert [u["status"] for u in listed.json()["items"]] == ["pending_deletion"]
    r = await client.put(f"{API}/admin/users/{account.id}/status", json={"status": back}, headers=superadmin_headers)
    assert r.status_code == expected, r.text
    status = await pg.fetchval("SELECT status FROM user_accounts WHERE id = $1", account.id)
    assert status == (before if expected == 200 else "pending_deletion")


async def test_pending_deletion_answers_every_authenticated_route(app, client, pg):
    """Table-driven over the app's routes: every guarded one answers 403 AccountPendingDeletion."""
    account = await register(client)
    await _delete(client, account)
    guarded = []
    for route in app.router.routes:
        handler = route.handler
        if getattr(handler, GUARDED_MARK, None) is None:
            continue
        path = "/" + route.path
        path = re.sub(r"<[^>]+>", lambda m: str(uuid.uuid4()) if "id" in m.group(0) else "user", path)
        for method in route.methods:
            guarded.append((method, path))
    assert len(guarded) > 15
    answers = {}
    for method, path in sorted(guarded):
        response = await client.request(method, path, headers=account.headers, json={})
        answers[(method, path)] = (response.status_code, response.json().get("error"))
    wrong = {k: v for k, v in answers.items() if v != (403, "AccountPendingDeletion")}
    assert not wrong


async def test_a_login_racing_the_deletion_leaves_no_live_session(client, pg):
    """Whichever commits first, the account ends pending with no session alive: a login that
    won is revoked by the deletion; one that lost is refused by the gate."""
    outcomes = set()
    for _ in range(4):
        account = await register(client)
        login, deleted = await asyncio.gather(
            client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD}),
            client.delete(f"{API}/me", headers=account.headers),
        )
        assert deleted.status_code == 202, deleted.text
        live = await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", account.id)
        assert live == 0
        if login.status_code == 200:
            me = await client.get(f"{API}/me", headers=bearer(login.json()["access_token"]))
            assert (me.status_code, me.json()["error"]) == (403, "AccountPendingDeletion")
        else:
            assert (login.status_code, login.json()["error"]) == (403, "AccountPendingDeletion")
        outcomes.add(login.status_code)
    assert outcomes <= {200, 403}


async def test_pending_deletion_is_answered_from_the_cache_with_no_sql_and_one_round_trip(client, monkeypatch):
    """The status rides in the cached user context, as `disabled` does: a warm refusal costs
    what a warm admission costs."""
    account = await register(client)
    await _delete(client, account)
    first = await client.get(f"{API}/me", headers=account.headers)  # the cache is filled (pending)
    assert first.json()["error"] == "AccountPendingDeletion"
    with counting(monkeypatch) as counts:
        for _ in range(3):
            response = await client.get(f"{API}/dashboard", headers=account.headers)
            assert (response.status_code, response.json()["error"]) == (403, "AccountPendingDeletion")
    assert counts == {"sql": 0, "redis": 3}
