"""Signing in and stepping up with a passkey: what is refused (and why), how it meets MFA,
the locks, security events and the account's other flows."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets

import jwt
import pytest

from manas360.services.access.entitlements import forget_user
from manas360.settings import load_settings
from tests.auth.mfa_helpers import VERIFY, enable
from tests.auth.passkey_helpers import (
    LOGIN,
    PASSKEYS,
    REAUTH_OPTIONS,
    REGISTER,
    REGISTER_OPTIONS,
    authenticator_for,
    enrol,
    login_options,
    register_options,
    sign_in,
    verify_email,
)
from tests.fixtures.accounts import API, PASSWORD, bearer, login, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.authenticator import Authenticator, unb64url
from tests.fixtures.outbox import mail_bodies

REAUTHENTICATE = f"{API}/auth/reauthenticate"


def _claims(pair) -> dict:
    return jwt.decode(pair["access_token"], options={"verify_signature": False})


def _error(response) -> tuple[int, str | None]:
    return response.status_code, response.json().get("error")


async def _sessions(pg, user_id: str) -> int:
    return await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", user_id)


async def _age(client, pg, account, seconds: int) -> None:
    """The session's credential `seconds` old (the account's pair refreshed to carry it)."""
    await pg.execute(
        "UPDATE sessions SET auth_time = auth_time - make_interval(secs => $2) WHERE id = $1",
        _claims(account.pair)["sid"],
        seconds,
    )
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refreshed.status_code == 200, refreshed.text
    account.pair = refreshed.json()


@pytest.fixture
async def holder(client, pg, settings):
    """A verified account with one user-verifying passkey, and its authenticator."""
    account = await register(client)
    await verify_email(pg, account)
    authenticator = authenticator_for(settings)
    await enrol(client, account, authenticator)
    return account, authenticator


# What an attacker (or a broken client) changes in a sign-in, and the answer it gets.
async def _replayed(client, pg, account, authenticator, ceremony):
    body = {"challenge_id": ceremony["challenge_id"], "credential": authenticator.get(ceremony["options"])}
    assert (await client.post(LOGIN, json=body)).status_code == 200
    return await client.post(LOGIN, json=body)


async def _wrong_origin(client, pg, account, authenticator, ceremony):
    credential = authenticator.get(ceremony["options"], origin="https://evil.example")
    return await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})


async def _wrong_rp_id(client, pg, account, authenticator, ceremony):
    credential = authenticator.get(ceremony["options"], rp_id="evil.example")
    return await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})


async def _no_user_presence(client, pg, account, authenticator, ceremony):
    credential = authenticator.get(ceremony["options"], user_present=False)
    return await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})


async def _creation_type(client, pg, account, authenticator, ceremony):
    credential = authenticator.get(ceremony["options"], kind="webauthn.create")
    return await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})


async def _bad_signature(client, pg, account, authenticator, ceremony):
    credential = authenticator.get(ceremony["options"])
    signature = bytearray(unb64url(credential["response"]["signature"]))
    signature[-1] ^= 0x01
    credential["response"]["signature"] = base64.urlsafe_b64encode(bytes(signature)).rstrip(b"=").decode()
    return await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})


async def _other_challenge(client, pg, account, authenticator, ceremony):
    """An assertion over another ceremony's challenge, sent with this one's id."""
    other = await login_options(client)
    credential = authenticator.get({**ceremony["options"], "challenge": other["options"]["challenge"]})
    return await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})


async def _register_challenge(client, pg, account, authenticator, ceremony):
    """A register challenge (of this very account) used to sign in: another purpose."""
    registering = await register_options(client, account)
    credential = authenticator.get({"challenge": registering["options"]["challenge"], "allowCredentials": []})
    return await client.post(LOGIN, json={"challenge_id": registering["challenge_id"], "credential": credential})


async def _expired(client, pg, account, authenticator, ceremony):
    await pg.execute(
        "UPDATE webauthn_challenges SET expires_at = now() - interval '1 second' WHERE user_id = $1", account.id
    )
    credential = authenticator.get(ceremony["options"])
    return await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})


async def _unknown_id(client, pg, account, authenticator, ceremony):
    credential = authenticator.get(ceremony["options"])
    return await client.post(LOGIN, json={"challenge_id": secrets.token_urlsafe(32), "credential": credential})


async def _unregistered_credential(client, pg, account, authenticator, ceremony):
    stranger = Authenticator(origin=authenticator.origin, rp_id=authenticator.rp_id)
    stranger.create(
        {
            "rp": {"id": authenticator.rp_id},
            "user": {"id": "AAAA"},
            "challenge": "AAAA",
            "pubKeyCredParams": [{"alg": -7, "type": "public-key"}],
        }
    )
    credential = stranger.get({**ceremony["options"], "allowCredentials": []})
    return await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})


async def _garbled(client, pg, account, authenticator, ceremony):
    return await client.post(
        LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": {"id": "x", "response": 3}}
    )


REFUSALS = [
    ("replayed challenge", _replayed, (401, "InvalidToken")),
    ("wrong origin", _wrong_origin, (401, "InvalidCredentials")),
    ("wrong RP ID", _wrong_rp_id, (401, "InvalidCredentials")),
    ("user not present", _no_user_presence, (401, "InvalidCredentials")),
    ("clientData of a registration", _creation_type, (401, "InvalidCredentials")),
    ("signature altered", _bad_signature, (401, "InvalidCredentials")),
    ("signed another challenge", _other_challenge, (401, "InvalidCredentials")),
    ("register challenge at login", _register_challenge, (401, "InvalidToken")),
    ("expired challenge", _expired, (401, "InvalidToken")),
    ("unknown challenge id", _unknown_id, (401, "InvalidToken")),
    ("credential never registered", _unregistered_credential, (401, "InvalidCredentials")),
    ("garbled credential", _garbled, (401, "InvalidCredentials")),
]


@pytest.mark.parametrize(("name", "act", "answer"), REFUSALS, ids=[row[0] for row in REFUSALS])
async def test_a_sign_in_that_does_not_verify_is_refused_and_opens_no_session(client, pg, holder, name, act, answer):
    account, authenticator = holder
    ceremony = await login_options(client, account.email)
    before = await _sessions(pg, account.id)
    refused = await act(client, pg, account, authenticator, ceremony)
    assert _error(refused) == answer, refused.text
    assert await _sessions(pg, account.id) == before + (1 if name == "replayed challenge" else 0)


async def test_a_login_challenge_cannot_register_a_passkey(client, holder):
    account, authenticator = holder
    ceremony = await login_options(client)
    other = Authenticator(origin=authenticator.origin, rp_id=authenticator.rp_id)
    options = (await register_options(client, account))["options"]
    credential = other.create({**options, "challenge": ceremony["options"]["challenge"]})
    refused = await client.post(
        REGISTER, headers=account.headers, json={"challenge_id": ceremony["challenge_id"], "credential": credential}
    )
    assert _error(refused) == (401, "InvalidToken")


async def test_a_counter_that_goes_backwards_is_refused_and_audited(client, pg, holder, settings):
    account, authenticator = holder
    assert (await sign_in(client, authenticator, sign_count=40)).status_code == 200
    for count in (39, 40, 0):  # back, the same, and "no counter" from a device that had one
        refused = await sign_in(client, authenticator, sign_count=count)
        assert _error(refused) == (401, "InvalidCredentials"), count
    rows = await pg.fetch(
        "SELECT before, after FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.passkey_counter_regressed' "
        "ORDER BY id",
        account.id,
    )
    assert len(rows) == 3
    assert await pg.fetchval("SELECT sign_count FROM webauthn_credentials WHERE user_id = $1", account.id) == 40
    assert (await sign_in(client, authenticator, sign_count=41)).status_code == 200


async def test_an_authenticator_without_a_counter_signs_in_again_and_again(client, pg, settings):
    account = await register(client)
    await verify_email(pg, account)
    authenticator = authenticator_for(settings, counter=False)
    await enrol(client, account, authenticator)
    for _ in range(3):
        assert (await sign_in(client, authenticator)).status_code == 200


async def test_someone_elses_passkey_cannot_answer_a_challenge_made_for_another_account(client, pg, settings, holder):
    account, _ = holder
    mallory = await register(client)
    await verify_email(pg, mallory)
    malloryskey = authenticator_for(settings)
    await enrol(client, mallory, malloryskey)
    # Options for someone's address, or for one without an account, answered with one's own
    # passkey: the same refusal, so a passkey is no oracle of which addresses have accounts.
    for email in (account.email, f"nobody-{account.email}"):
        ceremony = await login_options(client, email)
        credential = malloryskey.get({**ceremony["options"], "allowCredentials": []})
        refused = await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})
        assert _error(refused) == (401, "InvalidToken"), email
    step_up = (await client.post(REAUTH_OPTIONS, headers=account.headers)).json()
    credential = malloryskey.get({**step_up["options"], "allowCredentials": []})
    refused = await client.post(
        REAUTHENTICATE,
        headers=account.headers,
        json={"challenge_id": step_up["challenge_id"], "credential": credential},
    )
    assert _error(refused) == (401, "InvalidCredentials")
    theirs = (await client.post(REAUTH_OPTIONS, headers=mallory.headers)).json()
    refused = await client.post(
        REAUTHENTICATE,
        headers=account.headers,
        json={"challenge_id": theirs["challenge_id"], "credential": malloryskey.get(theirs["options"])},
    )
    assert _error(refused) == (401, "InvalidToken")


@pytest.mark.parametrize("with_email", [True, False], ids=["with email", "discoverable"])
async def test_a_security_event_kills_every_outstanding_challenge(client, holder, with_email):
    account, authenticator = holder
    ceremony = await login_options(client, account.email if with_email else None)
    registering = await register_options(client, account)
    assert (await client.post(f"{API}/auth/logout-all", headers=account.headers)).status_code == 204
    refused = await client.post(
        LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": authenticator.get(ceremony["options"])}
    )
    assert _error(refused) == (401, "InvalidToken")
    fresh = await login(client, account)
    other = Authenticator(origin=authenticator.origin, rp_id=authenticator.rp_id)
    late = await client.post(
        REGISTER,
        headers=fresh.headers,
        json={"challenge_id": registering["challenge_id"], "credential": other.create(registering["options"])},
    )
    assert _error(late) == (401, "InvalidToken")
    assert (await sign_in(client, authenticator)).status_code == 200  # a new challenge works


async def test_with_mfa_on_a_verifying_passkey_is_a_complete_login_and_one_without_leads_to_the_code(
    client, pg, settings
):
    account = await register(client)
    await verify_email(pg, account)
    enabled = await enable(client, account)  # the session is at aal 2 and fresh: it may add a passkey
    authenticator = authenticator_for(settings)
    await enrol(client, account, authenticator)

    complete = await sign_in(client, authenticator)
    assert complete.status_code == 200, complete.text
    assert (_claims(complete.json())["amr"], _claims(complete.json())["aal"]) == (["hwk", "user", "mfa"], 2)

    first_factor = await sign_in(client, authenticator, user_verified=False)
    assert _error(first_factor) == (403, "MfaRequired") and first_factor.json()["mfa_token"]
    finished = await client.post(VERIFY, json={"mfa_token": first_factor.json()["mfa_token"], "code": enabled.code()})
    assert finished.status_code == 200, finished.text
    assert (_claims(finished.json())["amr"], _claims(finished.json())["aal"]) == (["hwk", "otp", "mfa"], 2)


async def test_without_mfa_a_passkey_that_did_not_verify_the_user_is_a_first_factor_at_aal_1(client, holder):
    account, authenticator = holder
    answer = await sign_in(client, authenticator, user_verified=False)
    assert answer.status_code == 200, answer.text
    assert (_claims(answer.json())["amr"], _claims(answer.json())["aal"]) == (["hwk"], 1)


LOCKS = ["this source", "account-wide"]


@pytest.mark.parametrize("lock", LOCKS)
async def test_no_lock_refuses_a_verifying_passkey_but_a_first_factor_meets_it(app, client, pg, holder, lock):
    account, authenticator = holder
    if lock == "this source":
        for _ in range(5):
            wrong = await client.post(f"{API}/auth/login", json={"email": account.email, "password": "wrong one!"})
            assert wrong.status_code == 401
    else:
        await pg.execute(
            "UPDATE user_accounts SET locked_until = now() + interval '15 minutes' WHERE id = $1", account.id
        )
        await forget_user(store=app.ctx.deps.store, user_id=account.id)
    password = await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    assert _error(password) == (423, "AccountLocked")
    assert _error(await sign_in(client, authenticator, user_verified=False)) == (423, "AccountLocked")
    assert (await sign_in(client, authenticator)).status_code == 200


async def test_failed_assertions_count_toward_no_lock(client, pg, holder):
    account, authenticator = holder
    for _ in range(7):  # past the per-source threshold of 5
        refused = await sign_in(client, authenticator, origin="https://evil.example")
        assert _error(refused) == (401, "InvalidCredentials")
    password = await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    assert password.status_code == 200, password.text
    assert await pg.fetchval(
        "SELECT locked_until IS NULL AND mfa_failures = 0 FROM user_accounts WHERE id = $1", account.id
    )


async def test_a_disabled_account_is_refused(app, client, pg, holder):
    account, authenticator = holder
    await pg.execute("UPDATE user_accounts SET status = 'disabled' WHERE id = $1", account.id)
    await forget_user(store=app.ctx.deps.store, user_id=account.id)
    before = await _sessions(pg, account.id)
    assert _error(await sign_in(client, authenticator)) == (403, "AccountDisabled")
    assert await _sessions(pg, account.id) == before


async def test_adding_and_removing_need_a_recent_credential_and_a_passkey_can_provide_it(client, pg, holder):
    account, authenticator = holder
    (passkey,) = (await client.get(PASSKEYS, headers=account.headers)).json()["items"]
    await _age(client, pg, account, 301)
    for refused in (
        await client.post(REGISTER_OPTIONS, headers=account.headers, json={}),
        await client.post(REGISTER, headers=account.headers, json={"challenge_id": "x" * 43, "credential": {}}),
        await client.delete(f"{PASSKEYS}/{passkey['id']}", headers=account.headers),
    ):
        assert _error(refused) == (403, "ReauthenticationRequired"), refused.text
    assert len((await client.get(PASSKEYS, headers=account.headers)).json()["items"]) == 1

    old = _claims(account.pair)
    step_up = (await client.post(REAUTH_OPTIONS, headers=account.headers)).json()
    assert [unb64url(c["id"]) for c in step_up["options"]["allowCredentials"]] == list(authenticator.credentials)
    fresh = await client.post(
        REAUTHENTICATE,
        headers=account.headers,
        json={"challenge_id": step_up["challenge_id"], "credential": authenticator.get(step_up["options"])},
    )
    assert fresh.status_code == 200, fresh.text
    claims = _claims(fresh.json())
    assert claims["sid"] == old["sid"] and claims["auth_time"] >= old["auth_time"] + 300
    assert (claims["amr"], claims["aal"]) == (["hwk", "user", "mfa"], 2)
    account.pair = fresh.json()
    replay = await client.post(
        REAUTHENTICATE,
        headers=account.headers,
        json={"challenge_id": step_up["challenge_id"], "credential": authenticator.get(step_up["options"])},
    )
    assert _error(replay) == (401, "InvalidToken")
    assert (await client.delete(f"{PASSKEYS}/{passkey['id']}", headers=account.headers)).status_code == 204


async def test_a_passkey_without_user_verification_steps_up_only_to_aal_1_and_not_past_mfa(client, pg, settings):
    account = await register(client)
    await verify_email(pg, account)
    authenticator = authenticator_for(settings)
    await enrol(client, account, authenticator)
    for mfa, answer in ((False, 200), (True, 403)):
        if mfa:
            await enable(client, account)
        step_up = (await client.post(REAUTH_OPTIONS, headers=account.headers)).json()
        credential = authenticator.get(step_up["options"], user_verified=False)
        response = await client.post(
            REAUTHENTICATE,
            headers=account.headers,
            json={"challenge_id": step_up["challenge_id"], "credential": credential},
        )
        assert response.status_code == answer, response.text
        if answer == 200:
            assert _claims(response.json())["aal"] == 1
            account.pair = response.json()
        else:
            assert response.json()["error"] == "MfaRequired"


async def test_reauthenticate_takes_one_form_of_proof_or_the_other(client, holder):
    account, _ = holder
    for body in (
        {"password": PASSWORD, "challenge_id": "x", "credential": {}},
        {"challenge_id": "x"},
        {"credential": {}},
        {},
    ):
        refused = await client.post(REAUTHENTICATE, headers=account.headers, json=body)
        assert _error(refused) == (422, "ValidationError"), body


async def test_removing_a_passkey_signs_every_other_session_out_and_mails_the_owner(client, pg, settings, holder):
    account, authenticator = holder
    other = await login(client, account)
    (passkey,) = (await client.get(PASSKEYS, headers=account.headers)).json()["items"]
    removed = await client.delete(f"{PASSKEYS}/{passkey['id']}", headers=account.headers)
    assert removed.status_code == 204
    assert _error(await client.get(f"{API}/me", headers=other.headers)) == (401, "TokenRevoked")
    assert (await client.get(f"{API}/me", headers=account.headers)).status_code == 200
    assert (await client.get(PASSKEYS, headers=account.headers)).json()["items"] == []
    assert _error(await sign_in(client, authenticator)) == (401, "InvalidCredentials")
    bodies = await mail_bodies(pg, settings, user_id=account.id, kind="security_notice")
    assert any("passkey was removed" in body for body in bodies)
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.passkey_removed'", account.id
        )
        == 1
    )


def _token_row(purpose: str) -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


async def _verify_email(client, pg, account):
    token, digest = _token_row("email_verification")
    await pg.execute(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at) "
        "VALUES ($1, $2, 'email_verification', now() + interval '1 hour')",
        digest,
        account.id,
    )
    return await client.post(f"{API}/auth/verify-email", json={"token": token})


async def _reset(client, pg, account):
    token, digest = _token_row("password_reset")
    await pg.execute(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at) "
        "VALUES ($1, $2, 'password_reset', now() + interval '30 minutes')",
        digest,
        account.id,
    )
    return await client.post(
        f"{API}/auth/password-reset/confirm", json={"token": token, "new_password": "a brand new passphrase"}
    )


@pytest.mark.parametrize("proof", [_verify_email, _reset], ids=["verify-email", "reset confirm"])
async def test_the_first_proof_of_the_mailbox_removes_every_passkey_made_before_it(app, client, pg, holder, proof):
    """Pre-hijacking: passkeys on an address nobody had proved (set here as an operator's
    restore or an older release would leave them) go with the owner's first proof."""
    account, authenticator = holder
    await pg.execute("UPDATE user_accounts SET email_verified_at = NULL WHERE id = $1", account.id)
    await forget_user(store=app.ctx.deps.store, user_id=account.id)
    answer = await proof(client, pg, account)
    assert answer.status_code == 200, answer.text
    assert await pg.fetchval("SELECT count(*) FROM webauthn_credentials WHERE user_id = $1", account.id) == 0
    assert _error(await sign_in(client, authenticator)) == (401, "InvalidCredentials")


async def test_a_later_proof_of_a_verified_mailbox_keeps_the_passkeys(client, pg, holder):
    account, authenticator = holder
    assert (await _reset(client, pg, account)).status_code == 200
    assert (await sign_in(client, authenticator)).status_code == 200


async def test_an_admin_mfa_reset_keeps_the_passkeys(client, pg, settings, superadmin_headers):
    account = await register(client)
    await verify_email(pg, account)
    await enable(client, account)
    authenticator = authenticator_for(settings)
    await enrol(client, account, authenticator)
    reset = await client.post(f"{API}/admin/users/{account.id}/mfa/reset", headers=superadmin_headers)
    assert reset.status_code in (200, 204), reset.text
    assert await pg.fetchval("SELECT NOT mfa_enabled FROM user_accounts WHERE id = $1", account.id)
    assert await pg.fetchval("SELECT count(*) FROM webauthn_credentials WHERE user_id = $1", account.id) == 1
    assert (await sign_in(client, authenticator)).status_code == 200


async def test_login_options_and_login_are_rate_limited(environ, database, redis_raw, holder):
    _, authenticator = holder
    limited = {**environ, "RATE_LIMIT_PASSKEY_OPTIONS": "2/900", "RATE_LIMIT_AUTH": "2/900"}
    async with running_app(load_settings(limited)) as app, client_for(app, client_ip="198.51.100.7") as client:
        options = [await client.post(f"{PASSKEYS}/login/options", json={}) for _ in range(3)]
        assert [o.status_code for o in options] == [200, 200, 429]
        assert '"passkey_options";q=2;w=900' in options[0].headers["RateLimit-Policy"]
        logins = [
            await client.post(
                LOGIN, json={"challenge_id": "x" * 43, "credential": authenticator.get(options[0].json()["options"])}
            )
            for _ in range(3)
        ]
        assert [r.status_code for r in logins] == [401, 401, 429]


async def test_a_passkey_session_is_an_ordinary_one(client, holder):
    account, authenticator = holder
    pair = (await sign_in(client, authenticator)).json()
    sessions = await client.get(f"{API}/auth/sessions", headers=bearer(pair["access_token"]))
    assert sum(1 for s in sessions.json()["items"] if s["current"]) == 1
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    assert (_claims(refreshed.json())["amr"], _claims(refreshed.json())["aal"]) == (["hwk", "user", "mfa"], 2)


@pytest.mark.parametrize("shared", ["one challenge", "one counter value"])
async def test_two_racing_sign_ins_let_exactly_one_in(client, pg, holder, shared):
    """Two requests at once with one challenge (spent by a compare-and-set), or with two
    challenges signed at the same counter value (judged under the passkey's row lock)."""
    account, authenticator = holder
    first = await login_options(client)
    second = first if shared == "one challenge" else await login_options(client)
    count = authenticator.credentials[next(iter(authenticator.credentials))].sign_count + 1
    bodies = [
        {
            "challenge_id": ceremony["challenge_id"],
            "credential": authenticator.get(ceremony["options"], sign_count=count),
        }
        for ceremony in (first, second)
    ]
    before = await _sessions(pg, account.id)
    answers = await asyncio.gather(*(client.post(LOGIN, json=body) for body in bodies))
    assert sorted(a.status_code for a in answers) == [200, 401]
    assert await _sessions(pg, account.id) == before + 1
