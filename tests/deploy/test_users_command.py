"""`manas360 users ...` against a live server: each command's effect is visible on the very
next API request (the command commits, then tells Redis, as the admin API does), and is
audited with the request id `cli`."""

from __future__ import annotations

import json
import subprocess
import sys

import asyncpg
import httpx
import pytest

from tests.fixtures.accounts import API, PASSWORD, bearer, unique_email
from tests.fixtures.server import start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(environ, database, tmp_path_factory):
    # Two workers: the command's invalidation must reach both, not only one.
    server = start_server({**environ, "LOCKOUT_THRESHOLD": "3"}, workers=2, tmp_dir=tmp_path_factory.mktemp("users"))
    yield server
    server.stop()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def users(environ, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "manas360.cli", "users", *args], env=environ, capture_output=True, text=True, timeout=60
    )


def ok(environ, *args: str) -> str:
    result = users(environ, *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def account(http) -> tuple[str, dict[str, str]]:
    email = unique_email("cli")
    response = http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email, bearer(response.json()["access_token"])


def login(http, email: str) -> httpx.Response:
    return http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})


def test_show_prints_the_account_as_the_admin_api_does(environ, http):
    email, _ = account(http)
    shown = json.loads(ok(environ, "show", email.upper()))
    assert (shown["email"], shown["role"], shown["plan"], shown["status"]) == (email, "user", "free", "active")
    assert shown["subscription"]["plan"] == "free" and shown["locks"] == []


def test_disable_answers_403_on_the_next_request_and_enable_lets_the_user_back(environ, http):
    email, headers = account(http)
    assert http.get(f"{API}/me", headers=headers).status_code == 200  # cached on the workers now
    assert ok(environ, "disable", email).startswith(f"{email}: disabled")
    for _ in range(4):  # whichever worker answers
        response = http.get(f"{API}/me", headers=headers)
        assert response.status_code in (401, 403), response.text
    assert login(http, email).status_code == 403
    ok(environ, "enable", email)
    assert login(http, email).status_code == 200


def test_schedule_deletion_refuses_every_request_and_cancel_deletion_brings_the_account_back(environ, http):
    email, headers = account(http)
    assert http.get(f"{API}/me", headers=headers).status_code == 200  # cached on the workers now
    assert ok(environ, "schedule-deletion", email).startswith(f"{email}: pending_deletion until ")
    for _ in range(4):  # whichever worker answers
        response = http.get(f"{API}/me", headers=headers)
        assert (response.status_code, response.json()["error"]) == (403, "AccountPendingDeletion")
    assert login(http, email).json()["error"] == "AccountPendingDeletion"
    refused = users(environ, "enable", email)  # only cancel-deletion leaves pending_deletion
    assert refused.returncode == 1 and "cancel-deletion" in refused.stderr
    assert ok(environ, "cancel-deletion", email).strip() == f"{email}: active"
    assert login(http, email).status_code == 200


def test_revoke_sessions_and_reset_mfa_end_every_session(environ, http, database):
    for command in ("revoke-sessions", "reset-mfa"):
        email, headers = account(http)
        refresh = login(http, email).json()["refresh_token"]
        assert http.get(f"{API}/me", headers=headers).status_code == 200
        ok(environ, command, email)
        assert http.get(f"{API}/me", headers=headers).status_code == 401
        assert http.post(f"{API}/auth/refresh", json={"refresh_token": refresh}).status_code == 401


def test_unlock_lets_a_locked_out_user_log_in_at_once(environ, http):
    email, _ = account(http)
    for _ in range(3):
        http.post(f"{API}/auth/login", json={"email": email, "password": "wrong password entirely"})
    assert login(http, email).status_code == 423
    assert ok(environ, "unlock", email).strip() == f"{email}: unlocked"
    assert login(http, email).status_code == 200


def test_set_role_and_set_plan_change_what_the_current_token_may_do(environ, http):
    email, headers = account(http)
    assert http.get(f"{API}/admin/users", headers=headers).status_code == 403
    assert http.get(f"{API}/premium/dashboard", headers=headers).status_code == 403
    ok(environ, "set-role", email, "admin")
    assert http.get(f"{API}/admin/users", headers=headers).status_code == 200
    assert ok(environ, "set-plan", email, "premium", "--until", "2099-01-01T00:00:00Z").strip() == (
        f"{email}: plan premium until 2099-01-01T00:00:00+00:00"
    )
    assert http.get(f"{API}/premium/dashboard", headers=headers).status_code == 200
    ok(environ, "set-plan", email, "free")
    assert http.get(f"{API}/premium/dashboard", headers=headers).status_code == 403


async def test_each_write_is_audited_as_the_command_line(environ, http, database):
    email, _ = account(http)
    ok(environ, "set-role", email, "subscriber")
    conn = await asyncpg.connect(database.replace("postgres://", "postgresql://", 1))
    try:
        row = await conn.fetchrow(
            "SELECT actor_id, request_id, after FROM audit_logs a JOIN user_accounts u "
            "ON u.id = a.target_user_id WHERE u.email = $1 AND action = 'admin.role_changed'",
            email,
        )
    finally:
        await conn.close()
    assert row["actor_id"] is None and row["request_id"] == "cli"
    assert json.loads(row["after"]) == {"role": "subscriber"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["disable", "nobody-here@example.com"], "manas360: no user with email nobody-here@example.com"),
        (["set-role", "{email}", "emperor"], "manas360: role unknown role 'emperor'"),
        (["set-plan", "{email}", "platinum"], "manas360: plan unknown plan 'platinum'"),
    ],
)
def test_an_unknown_user_role_or_plan_is_one_line_and_exit_1(environ, http, args, message):
    email, _ = account(http)
    result = users(environ, *[arg.format(email=email) for arg in args])
    assert (result.returncode, result.stdout, result.stderr.strip()) == (1, "", message)


def test_a_bad_moment_is_a_usage_error(environ):
    result = users(environ, "set-plan", "a@example.com", "premium", "--until", "tomorrow")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
