"""Passkeys end to end: registration and sign-in ceremonies between the software
authenticator (real keys, real CBOR) and the real endpoints of a running app."""

from __future__ import annotations

import jwt
import pytest

from manas360.services.auth.passkeys import MAX_PASSKEYS
from tests.auth.passkey_helpers import (
    LOGIN,
    PASSKEYS,
    REGISTER,
    REGISTER_OPTIONS,
    authenticator_for,
    enrol,
    login_options,
    register_options,
    sign_in,
    verify_email,
)
from tests.fixtures.accounts import API, bearer, register, unique_email
from tests.fixtures.authenticator import EDDSA, ES256, InvalidStateError, unb64url
from tests.fixtures.outbox import mail_bodies


def _claims(pair) -> dict:
    return jwt.decode(pair["access_token"], options={"verify_signature": False})


@pytest.fixture
async def holder(client, pg, settings):
    """A verified account with one passkey (user-verifying, ES256), and its authenticator."""
    account = await register(client)
    await verify_email(pg, account)
    authenticator = authenticator_for(settings)
    passkey = await enrol(client, account, authenticator, name="Laptop")
    return account, authenticator, passkey


@pytest.mark.parametrize("alg", [ES256, EDDSA], ids=["ES256", "EdDSA"])
async def test_a_passkey_registered_with_each_algorithm_signs_in_discoverably_at_aal_2(client, pg, settings, alg):
    account = await register(client)
    await verify_email(pg, account)
    authenticator = authenticator_for(settings, alg=alg, backup_eligible=True, backed_up=True)
    ceremony = await register_options(client, account, name="Phone")
    options = ceremony["options"]
    assert options["rp"] == {"id": settings.webauthn.rp_id, "name": "MANAS360"}
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["attestation"] == "none" and options["excludeCredentials"] == []
    credential = authenticator.create(options)
    created = await client.post(
        REGISTER, headers=account.headers, json={"challenge_id": ceremony["challenge_id"], "credential": credential}
    )
    assert created.status_code == 201, created.text
    passkey = created.json()
    assert (passkey["name"], passkey["last_used_at"], passkey["backed_up"]) == ("Phone", None, True)
    listed = await client.get(PASSKEYS, headers=account.headers)
    assert listed.json()["items"] == [passkey]
    assert any(
        "passkey was added" in body
        for body in await mail_bodies(pg, settings, user_id=account.id, kind="security_notice")
    )

    answer = await sign_in(client, authenticator)  # no email: a discoverable credential
    assert answer.status_code == 200, answer.text
    claims = _claims(answer.json())
    assert (claims["sub"], claims["amr"], claims["aal"]) == (account.id, ["hwk", "user", "mfa"], 2)
    me = await client.get(f"{API}/me", headers=bearer(answer.json()["access_token"]))
    assert me.status_code == 200
    used = (await client.get(PASSKEYS, headers=account.headers)).json()["items"][0]
    assert used["last_used_at"] is not None


async def test_login_with_an_email_lists_its_passkeys_and_the_options_exclude_them_at_registration(
    client, holder, settings
):
    account, authenticator, _ = holder
    (credential_id,) = authenticator.credentials
    ceremony = await login_options(client, account.email.upper())
    assert [unb64url(c["id"]) for c in ceremony["options"]["allowCredentials"]] == [credential_id]
    # Ids only, like the decoys an unknown address gets (its transports would tell them apart).
    assert ceremony["options"]["allowCredentials"] == [
        {"id": ceremony["options"]["allowCredentials"][0]["id"], "type": "public-key"}
    ]
    decoys = (await login_options(client, "nobody-" + account.email))["options"]["allowCredentials"]
    assert all(set(entry) == {"id", "type"} for entry in decoys)
    assert ceremony["options"]["userVerification"] == "preferred"
    answer = await client.post(
        LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": authenticator.get(ceremony["options"])}
    )
    assert answer.status_code == 200, answer.text
    again = await register_options(client, account)
    assert [unb64url(c["id"]) for c in again["options"]["excludeCredentials"]] == [credential_id]
    with pytest.raises(InvalidStateError):
        authenticator.create(again["options"])


async def test_decoy_ids_are_stable_for_an_unknown_email_and_a_known_one_without_passkeys(client, pg):
    known = await register(client)
    seen = {}
    for email in (unique_email(), known.email, unique_email()):
        first, second = (await login_options(client, email)), (await login_options(client, email))
        ids = [c["id"] for c in first["options"]["allowCredentials"]]
        assert 1 <= len(ids) <= 3 and all(len(unb64url(i)) == 32 for i in ids)
        assert ids == [c["id"] for c in second["options"]["allowCredentials"]]
        assert first["challenge_id"] != second["challenge_id"]
        assert first["options"]["challenge"] != second["options"]["challenge"]
        seen[email] = ids
    assert len({tuple(ids) for ids in seen.values()}) == 3
    discoverable = await login_options(client)
    assert discoverable["options"].get("allowCredentials", []) == []


async def test_an_unverified_email_cannot_register_a_passkey(client, settings):
    account = await register(client)
    for response in (
        await client.post(REGISTER_OPTIONS, headers=account.headers, json={}),
        await client.post(REGISTER, headers=account.headers, json={"challenge_id": "x" * 43, "credential": {}}),
    ):
        assert (response.status_code, response.json()["error"]) == (403, "EmailNotVerified"), response.text


async def test_the_eleventh_passkey_is_refused(client, pg, settings):
    account = await register(client)
    await verify_email(pg, account)
    authenticators = [authenticator_for(settings) for _ in range(MAX_PASSKEYS + 1)]
    pending = await register_options(client, account)  # asked for while there was room
    for authenticator in authenticators[:MAX_PASSKEYS]:
        await enrol(client, account, authenticator)
    refused = await client.post(REGISTER_OPTIONS, headers=account.headers, json={})
    assert (refused.status_code, refused.json()["error"]) == (409, "PasskeyLimitReached")
    late = await client.post(
        REGISTER,
        headers=account.headers,
        json={"challenge_id": pending["challenge_id"], "credential": authenticators[-1].create(pending["options"])},
    )
    assert (late.status_code, late.json()["error"]) == (409, "PasskeyLimitReached")
    assert await pg.fetchval("SELECT count(*) FROM webauthn_credentials WHERE user_id = $1", account.id) == MAX_PASSKEYS


async def test_rename_and_someone_elses_passkey_is_not_found(client, holder):
    account, _, passkey = holder
    renamed = await client.patch(f"{PASSKEYS}/{passkey['id']}", headers=account.headers, json={"name": " Work laptop "})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Work laptop"
    for bad in ("   ", "x" * 65, "tab\there", 7):
        refused = await client.patch(f"{PASSKEYS}/{passkey['id']}", headers=account.headers, json={"name": bad})
        assert (refused.status_code, refused.json()["error"]) == (422, "ValidationError"), bad
    other = await register(client)
    for response in (
        await client.patch(f"{PASSKEYS}/{passkey['id']}", headers=other.headers, json={"name": "mine"}),
        await client.delete(f"{PASSKEYS}/{passkey['id']}", headers=other.headers),
        await client.delete(f"{PASSKEYS}/not-a-uuid", headers=account.headers),
    ):
        assert (response.status_code, response.json()["error"]) == (404, "NotFound")
    assert (await client.get(PASSKEYS, headers=account.headers)).json()["items"][0]["name"] == "Work laptop"


async def test_a_register_challenge_is_its_accounts_alone_and_a_credential_is_registered_once(
    client, pg, settings, holder
):
    account, authenticator, _ = holder
    other = await register(client)
    await verify_email(pg, other)
    theirs = await register_options(client, other)
    stolen = await client.post(
        REGISTER,
        headers=account.headers,
        json={
            "challenge_id": theirs["challenge_id"],
            "credential": authenticator_for(settings).create(theirs["options"]),
        },
    )
    assert (stolen.status_code, stolen.json()["error"]) == (401, "InvalidToken")
    # The same authenticator answering again with a credential id it already registered (a
    # replayed registration, or a crafted one naming someone's credential id).
    ceremony = await register_options(client, other)
    replayed = authenticator_for(settings)
    credential = replayed.create(ceremony["options"])
    ((credential_id, _),) = replayed.credentials.items()
    await pg.execute(
        "UPDATE webauthn_credentials SET credential_id = $1 WHERE user_id = $2",
        credential_id,
        account.id,
    )
    refused = await client.post(
        REGISTER, headers=other.headers, json={"challenge_id": ceremony["challenge_id"], "credential": credential}
    )
    assert (refused.status_code, refused.json()["error"]) == (401, "InvalidCredentials")
    assert await pg.fetchval("SELECT count(*) FROM webauthn_credentials WHERE user_id = $1", other.id) == 0


REGISTRATION_REFUSALS = [
    ("wrong origin", {"origin": "https://evil.example"}, (401, "InvalidCredentials")),
    ("wrong RP ID", {"rp_id": "evil.example"}, (401, "InvalidCredentials")),
    ("user not present", {"user_present": False}, (401, "InvalidCredentials")),
    (
        "another challenge signed",
        {"challenge": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        (401, "InvalidCredentials"),
    ),
    ("challenge used twice", {}, (401, "InvalidToken")),
]


@pytest.mark.parametrize(
    ("name", "tamper", "answer"), REGISTRATION_REFUSALS, ids=[row[0] for row in REGISTRATION_REFUSALS]
)
async def test_a_registration_that_does_not_verify_keeps_nothing(client, pg, settings, name, tamper, answer):
    account = await register(client)
    await verify_email(pg, account)
    ceremony = await register_options(client, account)
    body = {
        "challenge_id": ceremony["challenge_id"],
        "credential": authenticator_for(settings).create(ceremony["options"], **tamper),
    }
    if name == "challenge used twice":
        assert (await client.post(REGISTER, headers=account.headers, json=body)).status_code == 201
        body["credential"] = authenticator_for(settings).create(ceremony["options"])
    refused = await client.post(REGISTER, headers=account.headers, json=body)
    assert (refused.status_code, refused.json()["error"]) == answer, refused.text
    kept = await pg.fetchval("SELECT count(*) FROM webauthn_credentials WHERE user_id = $1", account.id)
    assert kept == (1 if name == "challenge used twice" else 0)
