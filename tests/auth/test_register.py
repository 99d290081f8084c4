"""POST /api/v1/auth/register: validation, email policy, mass assignment, races."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from tests.fixtures.accounts import API, PASSWORD, register, unique_email

URL = f"{API}/auth/register"


async def test_register_returns_201_with_a_token_pair_for_a_free_user(client):
    email = unique_email()
    response = await client.post(URL, json={"email": email, "password": PASSWORD, "display_name": "  Asha  "})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert len(body["refresh_token"]) >= 43
    user = body["user"]
    assert set(user) == {
        "id",
        "email",
        "display_name",
        "role",
        "privilege_level",
        "plan",
        "created_at",
        "status",
        "email_verified",
        "mfa_enabled",
    }
    assert (user["status"], user["email_verified"], user["mfa_enabled"]) == ("active", False, False)
    assert (user["email"], user["display_name"], user["role"], user["privilege_level"], user["plan"]) == (
        email,
        "Asha",
        "user",
        10,
        "free",
    )
    assert datetime.fromisoformat(user["created_at"]).utcoffset().total_seconds() == 0


async def test_registration_is_audited_and_stores_only_a_hash(client, pg):
    account = await register(client)
    row = await pg.fetchrow("SELECT password_hash FROM user_accounts WHERE id = $1", account.id)
    assert row["password_hash"].startswith("$m360v1$") and PASSWORD not in row["password_hash"]
    token_hash = await pg.fetchval("SELECT token_hash FROM tokens WHERE user_id = $1", account.id)
    assert account.refresh_token not in token_hash and len(token_hash) == 64
    actions = await pg.fetch(
        "SELECT action, actor_id FROM audit_logs WHERE target_user_id = $1 ORDER BY id", account.id
    )
    assert [(r["action"], str(r["actor_id"])) for r in actions] == [
        ("auth.register", account.id),
        ("auth.email_verification_sent", account.id),
    ]


async def test_email_differing_only_by_case_or_spaces_is_the_same_account(client):
    email = unique_email()
    await register(client, email=email)
    response = await client.post(URL, json={"email": f"  {email.upper()} ", "password": PASSWORD})
    assert response.status_code == 409 and response.json()["error"] == "EmailTaken"


async def test_full_width_email_folds_onto_the_ascii_account(client):
    email = unique_email()
    await register(client, email=email)
    full_width = "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in email)
    response = await client.post(URL, json={"email": full_width, "password": PASSWORD})
    assert response.status_code == 409


async def test_cyrillic_look_alike_email_is_refused(client):
    response = await client.post(URL, json={"email": "\u0430dmin@example.com", "password": PASSWORD})
    assert response.status_code == 422
    assert "ASCII" in response.json()["fields"]["email"]


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "sp ace@example.com", "", "x" * 300])
async def test_bad_email_is_422(client, email):
    response = await client.post(URL, json={"email": email, "password": PASSWORD})
    assert response.status_code == 422 and "email" in response.json()["fields"]


@pytest.mark.parametrize("password", ["short", "x" * 9, "x" * 129, "\u00e9" * 129])
async def test_password_outside_10_to_128_characters_is_422(client, password):
    response = await client.post(URL, json={"email": unique_email(), "password": password})
    assert response.status_code == 422 and "password" in response.json()["fields"]


async def test_huge_password_is_refused_before_any_hashing(client, monkeypatch):
    calls = []
    monkeypatch.setattr("manas360.services.auth.register.hash_password", lambda **kw: calls.append(kw))
    response = await client.post(URL, json={"email": unique_email(), "password": "p" * 60_000})
    assert response.status_code == 422 and calls == []
    # In-process (ASGI) the body limit is not applied, so 422; a real server answers 413
    # (tests/auth/test_servers.py).
    response = await client.post(URL, json={"email": unique_email(), "password": "p" * 1_000_000})
    assert response.status_code in (413, 422) and calls == []


async def test_a_password_of_128_multibyte_characters_registers_and_logs_in(client):
    password = "\u0928\u092e\u0938\u094d\u0924\u0947\U0001f600\x00" * 16  # 128 characters, NUL included
    assert len(password) == 128
    account = await register(client, password=password)
    response = await client.post(f"{API}/auth/login", json={"email": account.email, "password": password})
    assert response.status_code == 200
    response = await client.post(f"{API}/auth/login", json={"email": account.email, "password": password[:127]})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "field, value", [("role", "superadmin"), ("privilege_level", 100), ("plan", "enterprise"), ("is_admin", True)]
)
async def test_privileged_or_unknown_fields_are_refused_and_create_nothing(client, pg, field, value):
    email = unique_email()
    response = await client.post(URL, json={"email": email, "password": PASSWORD, field: value})
    assert response.status_code == 422 and field in response.json()["fields"]
    assert await pg.fetchval("SELECT count(*) FROM user_accounts WHERE email = $1", email) == 0


async def test_display_name_with_control_characters_is_422(client):
    response = await client.post(URL, json={"email": unique_email(), "password": PASSWORD, "display_name": "a\nb"})
    assert response.status_code == 422 and "display_name" in response.json()["fields"]


@pytest.mark.parametrize(
    "content, content_type",
    [
        (b'{"email": "x@example.com"', "application/json"),
        (b'["x@example.com"]', "application/json"),
        (b"email=x@example.com", "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_bodies_are_400(client, content, content_type):
    response = await client.post(URL, content=content, headers={"content-type": content_type})
    assert response.status_code == 400 and response.json()["error"] == "BadRequest"


async def test_concurrent_registrations_of_one_email_give_one_201_and_the_rest_409(client, pg):
    for _ in range(3):  # a few rounds: the race must hold every time, not just once
        email = unique_email()
        responses = await asyncio.gather(
            *[
                client.post(URL, json={"email": variant, "password": PASSWORD})
                for variant in (email, email.upper(), f" {email}", email)
            ]
        )
        assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
        assert await pg.fetchval("SELECT count(*) FROM user_accounts WHERE email = $1", email) == 1
