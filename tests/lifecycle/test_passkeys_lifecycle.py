"""Where passkeys meet the account's life: a revert takes back the passkeys a taker added, the
security events of the lifecycle kill a passkey ceremony in flight, and the export lists
passkeys without their key material. (A pending account's passkey login is a row of the gate
matrix; the purge's reach over the passkey tables is held by the catalog-driven purge test.)"""

from __future__ import annotations

from tests.auth.passkey_helpers import (
    LOGIN,
    REGISTER,
    authenticator_for,
    enrol,
    login_options,
    register_options,
    sign_in,
    verify_email,
)
from tests.fixtures.accounts import API, register, unique_email
from tests.lifecycle.test_email_change import _links, _request


async def _account_with_passkey(client, pg, settings):
    account = await register(client)
    await verify_email(pg, account)
    authenticator = authenticator_for(settings)
    passkey = await enrol(client, account, authenticator, name="mine")
    return account, authenticator, passkey


async def test_a_revert_removes_the_passkeys_added_since_the_request_and_keeps_the_owners(client, pg, settings):
    account, owners_key, owners = await _account_with_passkey(client, pg, settings)
    await _request(client, account, unique_email("moved"))
    confirm, cancel = await _links(pg, settings, account)
    confirmed = await client.post(f"{API}/auth/email-change/confirm", headers=account.headers, json={"token": confirm})
    assert confirmed.status_code == 200, confirmed.text
    takers_key = authenticator_for(settings)
    takers = await enrol(client, account, takers_key, name="taker's")
    assert (await sign_in(client, takers_key)).status_code == 200

    reverted = await client.post(f"{API}/auth/email-change/cancel", json={"token": cancel})
    assert reverted.status_code == 200, reverted.text
    left = {r["id"] for r in await pg.fetch("SELECT id::text FROM webauthn_credentials WHERE user_id = $1", account.id)}
    assert left == {owners["id"]} and takers["id"] not in left
    refused = await sign_in(client, takers_key)
    assert (refused.status_code, refused.json()["error"]) == (401, "InvalidCredentials")
    assert (await sign_in(client, owners_key)).status_code == 200  # the owner's own way in stays


async def test_the_lifecycle_events_kill_a_passkey_ceremony_in_flight(client, pg, settings):
    # A registration started before the address changed cannot finish after it.
    account, _, _ = await _account_with_passkey(client, pg, settings)
    ceremony = await register_options(client, account)
    await _request(client, account, unique_email("moved"))
    confirm, _ = await _links(pg, settings, account)
    confirmed = await client.post(f"{API}/auth/email-change/confirm", headers=account.headers, json={"token": confirm})
    assert confirmed.status_code == 200, confirmed.text
    late = await client.post(
        REGISTER,
        headers=account.headers,
        json={
            "challenge_id": ceremony["challenge_id"],
            "credential": authenticator_for(settings).create(ceremony["options"]),
        },
    )
    assert (late.status_code, late.json()["error"]) == (401, "InvalidToken")

    # A sign-in asked for before the deletion was scheduled cannot finish after it.
    account, key, _ = await _account_with_passkey(client, pg, settings)
    ceremony = await login_options(client, account.email)
    assert (await client.request("DELETE", f"{API}/me", headers=account.headers)).status_code == 202
    late = await client.post(
        LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": key.get(ceremony["options"])}
    )
    assert late.status_code in (401, 403) and late.json()["error"] in ("InvalidToken", "AccountPendingDeletion")
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", account.id) == 0


async def test_export_lists_the_passkeys_never_their_key_material(client, pg, settings):
    account, _, passkey = await _account_with_passkey(client, pg, settings)
    exported = await client.get(f"{API}/me/export", headers=account.headers)
    assert exported.status_code == 200, exported.text
    body = exported.text
    assert passkey["id"] in body and '"mine"' in body
    assert "public_key" not in body and "credential_id" not in body  # the key material never leaves
