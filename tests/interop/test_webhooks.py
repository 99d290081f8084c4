"""Webhooks against a real HTTP receiver that verifies them with the Standard Webhooks library:
every event once and in order, through outages, failures, redirects and dead letters, and never
in a request's way."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from manas360.services.admin import operator
from manas360.settings import load_settings
from tests.auth import mfa_helpers as mfa
from tests.fixtures.accounts import API, PASSWORD, bearer, login, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.gates import eventually
from tests.fixtures.outbox import mail_bodies
from tests.fixtures.smtp import TOKEN
from tests.fixtures.webhooks import Receiver, new_secret

NEW_PASSWORD = "a passphrase for the hooks"


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver(secret=new_secret())
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
async def hooked_app(environ, database, redis_raw, receiver):
    """The app with WEBHOOK_URL at the receiver; a second, older secret signs too (rotation)."""
    settings = load_settings(
        {
            **environ,
            "WEBHOOK_URL": receiver.url,
            "WEBHOOK_SECRET": f"{new_secret()} {receiver.secret}",
            "MAIL_POLL_S": "0.05",
            "MAIL_RETRY_MAX_S": "1",
            "WEBHOOK_TIMEOUT_S": "2",
        }
    )
    async with running_app(settings) as app:
        yield app


@pytest.fixture
async def hooks(hooked_app, receiver):
    receiver.fail.clear()
    receiver.fail_when = None
    receiver.redirect_to = None
    receiver.hold.set()
    async with client_for(hooked_app) as client:
        yield client


async def _events(receiver: Receiver, user_id: str, count: int, *, timeout: float = 15) -> list[dict]:
    await eventually(
        lambda: len(receiver.events_of(user_id)) >= count,
        timeout=timeout,
        what=f"{count} events of {user_id}: {receiver.events_of(user_id)}",
    )
    return receiver.events_of(user_id)


async def test_every_event_arrives_once_in_commit_order_numbered_and_verified(hooks, receiver, superadmin_headers):
    account = await register(hooks)
    other = await login(hooks, account)
    assert (
        await hooks.put(f"{API}/admin/users/{account.id}/role", headers=superadmin_headers, json={"role": "subscriber"})
    ).status_code == 200
    assert (await hooks.post(f"{API}/auth/logout", headers=other.headers)).status_code == 204
    changed = await hooks.post(
        f"{API}/auth/password",
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 200
    assert (
        await hooks.put(
            f"{API}/admin/users/{account.id}/status", headers=superadmin_headers, json={"status": "disabled"}
        )
    ).status_code == 200
    events = await _events(receiver, account.id, 6)
    await asyncio.sleep(0.3)  # nothing more, and nothing twice, arrives
    events = receiver.events_of(account.id)
    assert [(e["type"], e["data"].get("session_ids"), e["data"].get("reason")) for e in events] == [
        ("user.created", None, None),
        ("user.updated", None, None),
        ("session.revoked", [_sid(other)], "logout"),
        ("session.revoked", "all", "password_changed"),
        ("user.updated", None, None),
        ("session.revoked", "all", "disabled"),
    ]
    assert [e["data"]["seq"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0]["data"]["user"]["email"] == account.email and events[0]["data"]["user"]["role"] == "user"
    assert events[1]["data"]["user"]["role"] == "subscriber"
    assert events[4]["data"]["user"]["status"] == "disabled"
    assert set(events[0]["data"]["user"]) == set(account.pair["user"])  # the full <User>
    deliveries = [d for d in receiver.accepted if d.event["data"]["user_id"] == account.id]
    assert all(len(d.headers["webhook-signature"].split(" ")) == 2 for d in deliveries)  # both secrets sign
    assert "duplicate webhook-id" not in receiver.rejected


def _sid(account) -> str:
    import jwt

    return jwt.decode(account.pair["access_token"], options={"verify_signature": False})["sid"]


async def test_a_change_that_rolls_back_sends_nothing(hooks, receiver, superadmin_headers):
    account = await register(hooks)
    await _events(receiver, account.id, 1)
    refused = await hooks.put(
        f"{API}/admin/users/{account.id}/role", headers=account.headers, json={"role": "superadmin"}
    )
    assert refused.status_code == 403
    escalation = await hooks.put(
        f"{API}/admin/users/{account.id}/role", headers=superadmin_headers, json={"role": "nonexistent-role"}
    )
    assert escalation.status_code in (404, 422)
    assert (await hooks.post(f"{API}/auth/logout-all", headers=account.headers)).status_code == 204
    events = await _events(receiver, account.id, 2)
    assert [e["type"] for e in events] == ["user.created", "session.revoked"]


async def test_a_receiver_down_then_back_gets_everything_in_order(hooks, receiver):
    receiver.stop()
    try:
        accounts = [await register(hooks) for _ in range(3)]
        for account in accounts:
            assert (await hooks.post(f"{API}/auth/logout", headers=account.headers)).status_code == 204
        await asyncio.sleep(1.5)  # several attempts meet a refused connection
    finally:
        receiver.start()
    for account in accounts:
        events = await _events(receiver, account.id, 2, timeout=20)
        assert [(e["type"], e["data"]["seq"]) for e in events] == [("user.created", 1), ("session.revoked", 2)]


async def test_a_failing_event_is_retried_and_blocks_only_its_own_users_queue(hooks, receiver, hooked_app):
    stuck, free = await register(hooks), await register(hooks)
    await _events(receiver, free.id, 1)
    # Only the stuck user's logout event fails: its next event would be accepted, but must wait.
    receiver.fail_when = lambda event: event["data"]["user_id"] == stuck.id and event["data"].get("reason") == "logout"
    attempts_before = receiver.attempts
    assert (await hooks.post(f"{API}/auth/logout", headers=stuck.headers)).status_code == 204
    again = await login(hooks, stuck)  # the stuck user's next event must wait for the failing one
    assert (await hooks.post(f"{API}/auth/logout-all", headers=again.headers)).status_code == 204
    assert (await hooks.post(f"{API}/auth/logout", headers=free.headers)).status_code == 204
    assert [e["type"] for e in await _events(receiver, free.id, 2)] == ["user.created", "session.revoked"]
    await eventually(lambda: receiver.attempts >= attempts_before + 3, what="retries of the failing event")
    # Nothing of the stuck user's past the failing event.
    assert [e["type"] for e in receiver.events_of(stuck.id)] == ["user.created"]
    health = (await hooks.get("/health")).json()
    assert health["webhooks"]["pending"] >= 1  # waiting, retried; the sender itself works for others
    receiver.fail_when = None
    events = await _events(receiver, stuck.id, 3, timeout=20)
    assert [(e["type"], e["data"]["seq"], e["data"]["session_ids"] == "all") for e in events[1:]] == [
        ("session.revoked", 2, False),
        ("session.revoked", 3, True),
    ]


async def test_redirects_are_not_followed(hooks, receiver):
    receiver.redirect_to = receiver.url + "-moved"  # which would accept: following it would deliver
    account = await register(hooks)
    await eventually(lambda: receiver.attempts > 0 and receiver.redirect_to is not None, what="an attempt")
    attempts = receiver.attempts
    await eventually(lambda: receiver.attempts >= attempts + 2, what="the 307 retried, not followed")
    assert receiver.events_of(account.id) == []
    receiver.redirect_to = None
    assert [e["type"] for e in await _events(receiver, account.id, 1, timeout=20)] == ["user.created"]


async def test_a_hanging_receiver_never_holds_a_request(hooks, receiver):
    receiver.hold.clear()  # every delivery now hangs inside the receiver
    try:
        account = await register(hooks)
        await eventually(lambda: receiver.attempts > 0, what="a delivery in flight")
        # Requests that enqueue events answer while the delivery hangs.
        assert (await hooks.post(f"{API}/auth/logout", headers=account.headers)).status_code == 204
        second = await register(hooks)
        assert second.pair["access_token"]
    finally:
        receiver.hold.set()
    await _events(receiver, account.id, 2, timeout=20)


async def test_an_event_undelivered_past_its_age_is_a_dead_letter_and_the_next_goes_out(hooks, receiver, pg):
    account = await register(hooks)
    await _events(receiver, account.id, 1)
    receiver.fail.add(account.id)
    assert (await hooks.post(f"{API}/auth/logout", headers=account.headers)).status_code == 204
    await eventually(lambda: _pending_webhooks(pg, account.id), what="the event failing")
    # Time travel: the failing event has waited longer than WEBHOOK_MAX_AGE_S.
    await pg.execute(
        "UPDATE outbox SET created_at = created_at - interval '2 days' WHERE user_id = $1 "
        "AND channel = 'webhook' AND sent_at IS NULL",
        account.id,
    )
    # Until the sender has given it up: an attempt already under way fails, as it would have.
    await eventually(lambda: _dead_webhooks(pg, account.id), what="the event given up")
    receiver.fail.discard(account.id)
    login_again = await hooks.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    assert (
        await hooks.post(f"{API}/auth/logout-all", headers=bearer(login_again.json()["access_token"]))
    ).status_code == 204
    events = await _events(receiver, account.id, 2, timeout=20)
    assert [(e["type"], e["data"].get("session_ids")) for e in events] == [
        ("user.created", None),
        ("session.revoked", "all"),
    ]
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'webhook.dead_letter'", account.id
        )
        == 1
    )
    assert (await hooks.get("/health")).json()["webhooks"]["dead"] >= 1


async def _dead_webhooks(pg, user_id: str) -> bool:
    return (
        await pg.fetchval(
            "SELECT count(*) FROM outbox WHERE user_id = $1 AND channel = 'webhook' AND dead_at IS NOT NULL",
            user_id,
        )
        > 0
    )


async def _pending_webhooks(pg, user_id: str) -> bool:
    return (
        await pg.fetchval(
            "SELECT count(*) FROM outbox WHERE user_id = $1 AND channel = 'webhook' "
            "AND sent_at IS NULL AND attempts > 0",
            user_id,
        )
        > 0
    )


async def test_a_tampered_or_replayed_delivery_fails_the_published_verification(hooks, receiver):
    account = await register(hooks)
    await _events(receiver, account.id, 1)
    delivery = next(d for d in receiver.accepted if d.event["data"]["user_id"] == account.id)
    verifier = Webhook(receiver.secret)
    assert verifier.verify(delivery.body, delivery.headers)["type"] == "user.created"
    tampered = json.dumps({**delivery.event, "data": {**delivery.event["data"], "user_id": "someone-else"}})
    with pytest.raises(WebhookVerificationError):
        verifier.verify(tampered, delivery.headers)
    with pytest.raises(WebhookVerificationError):  # a fresh timestamp needs a fresh signature
        verifier.verify(delivery.body, {**delivery.headers, "webhook-timestamp": str(int(time.time()) + 1)})
    with pytest.raises(WebhookVerificationError):  # a capture replayed later than the tolerance
        verifier.verify(
            delivery.body,
            {**delivery.headers, "webhook-timestamp": str(int(delivery.headers["webhook-timestamp"]) - 600)},
        )
    # Replayed as sent, to the receiver itself: acknowledged, not applied a second time.
    async with httpx.AsyncClient() as client:
        await client.post(receiver.url, content=delivery.body, headers=delivery.headers)
    assert len(receiver.events_of(account.id)) == 1 and "duplicate webhook-id" in receiver.rejected


async def test_nothing_is_recorded_without_a_webhook_url(client, pg):
    account = await register(client)  # the run's shared app: no WEBHOOK_URL
    assert await pg.fetchval("SELECT count(*) FROM outbox WHERE user_id = $1 AND channel = 'webhook'", account.id) == 0


# Every path that changes what another service may hold about a user, and the events it must
# queue after `user.created`: (type, session_ids — a list of the named sessions, "all" or
# None —, reason). One row per path, so a path that forgets its event fails here by name.
async def _other_session(hooks, account, _):
    other = await login(hooks, account)
    return {"other": _sid(other), "other_account": other}


async def _delete_session(hooks, account, ctx):
    response = await hooks.delete(f"{API}/auth/sessions/{ctx['other']}", headers=account.headers)
    assert response.status_code == 204, response.text


async def _reuse_refresh(hooks, account, ctx):
    first = await hooks.post(f"{API}/auth/refresh", json={"refresh_token": account.pair["refresh_token"]})
    second = await hooks.post(f"{API}/auth/refresh", json={"refresh_token": first.json()["refresh_token"]})
    assert second.status_code == 200, second.text
    # The grandparent is reuse whatever the grace: the whole session goes.
    reused = await hooks.post(f"{API}/auth/refresh", json={"refresh_token": account.pair["refresh_token"]})
    assert reused.json()["error"] == "TokenReuseDetected"
    ctx["own"] = _sid(account)


async def _logout_all(hooks, account, ctx):
    assert (await hooks.post(f"{API}/auth/logout-all", headers=account.headers)).status_code == 204


async def _admin_revoke(hooks, account, ctx):
    response = await hooks.post(f"{API}/admin/users/{account.id}/revoke-sessions", headers=ctx["admin"])
    assert response.status_code == 204, response.text


async def _admin_plan(hooks, account, ctx):
    response = await hooks.put(
        f"{API}/admin/users/{account.id}/subscription", headers=ctx["admin"], json={"plan": "premium"}
    )
    assert response.status_code == 200, response.text


async def _mfa_on_then_admin_reset(hooks, account, ctx):
    await mfa.enable(hooks, account)
    response = await hooks.post(f"{API}/admin/users/{account.id}/mfa/reset", headers=ctx["admin"])
    assert response.status_code == 204, response.text


async def _password_reset(hooks, account, ctx):
    assert (await hooks.post(f"{API}/auth/password-reset", json={"email": account.email})).status_code == 202
    settings = ctx["app"].ctx.deps.settings
    [body] = await mail_bodies(ctx["pg"], settings, user_id=account.id, kind="password_reset")
    token = TOKEN.search(body).group(1)
    confirmed = await hooks.post(
        f"{API}/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert confirmed.status_code == 200, confirmed.text


async def _operator_disable(hooks, account, ctx):
    deps = ctx["app"].ctx.deps
    await operator.set_status(
        db=deps.db, settings=deps.settings, store=deps.store, email=account.email, status="disabled"
    )


async def _operator_role(hooks, account, ctx):
    deps = ctx["app"].ctx.deps
    await operator.set_role(
        db=deps.db, settings=deps.settings, store=deps.store, email=account.email, role="subscriber"
    )


WEBHOOK_PATHS = {
    "session deleted": (_other_session, _delete_session, [("session.revoked", ["other"], "deleted")]),
    "refresh token reused": (None, _reuse_refresh, [("session.revoked", ["own"], "reuse")]),
    "logout-all": (None, _logout_all, [("session.revoked", "all", "logout_all")]),
    "admin revokes sessions": (None, _admin_revoke, [("session.revoked", "all", "admin")]),
    "admin changes the plan": (None, _admin_plan, [("user.updated", None, None)]),
    "MFA on, then an admin resets it": (
        _other_session,
        _mfa_on_then_admin_reset,
        [("session.revoked", ["other"], "mfa_enabled"), ("session.revoked", "all", "admin_mfa_reset")],
    ),
    "password reset": (None, _password_reset, [("session.revoked", "all", "password_reset")]),
    "operator disables": (
        None,
        _operator_disable,
        [("user.updated", None, None), ("session.revoked", "all", "disabled")],
    ),
    "operator sets the role": (None, _operator_role, [("user.updated", None, None)]),
}


@pytest.mark.parametrize("path", list(WEBHOOK_PATHS))
async def test_each_path_queues_its_events(path, hooks, receiver, hooked_app, superadmin_headers, pg):
    prepare, act, expected = WEBHOOK_PATHS[path]
    account = await register(hooks)
    await _events(receiver, account.id, 1)
    ctx = {"admin": superadmin_headers, "app": hooked_app, "pg": pg}
    if prepare is not None:
        ctx.update(await prepare(hooks, account, ctx))
    await act(hooks, account, ctx)
    events = await _events(receiver, account.id, 1 + len(expected))
    await asyncio.sleep(0.3)  # nothing more, and nothing twice, arrives
    events = receiver.events_of(account.id)
    want = [
        (kind, [ctx[name] for name in sids] if isinstance(sids, list) else sids, why) for kind, sids, why in expected
    ]
    got = [(e["type"], e["data"].get("session_ids"), e["data"].get("reason")) for e in events[1:]]
    assert got == want
    assert [e["data"]["seq"] for e in events] == list(range(1, len(events) + 1))
    # A `user.*` event carries the state after the change, as committed.
    current = await hooks.get(f"{API}/admin/users/{account.id}", headers=superadmin_headers)
    for event in events[1:]:
        if event["type"] == "user.updated":
            assert {k: event["data"]["user"][k] for k in ("role", "plan", "status")} == {
                k: current.json()[k] for k in ("role", "plan", "status")
            }
