"""MFA against a real two-worker `manas360 serve`: each step may land on either worker, a
code spent on one is refused on the other, and the server's own log (DEBUG, access log
on) carries no secret, code or token."""

from __future__ import annotations

import pytest

from tests.auth.mfa_helpers import CONFIRM, LOGIN, SETUP, TOTP, VERIFY, code_at, wrong_code
from tests.fixtures.accounts import API, PASSWORD, bearer, unique_email
from tests.fixtures.server import clients_per_worker, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers(environ, database, tmp_path_factory):
    server = start_server(
        {**environ, "LOG_LEVEL": "DEBUG", "ACCESS_LOG": "1"}, workers=2, tmp_dir=tmp_path_factory.mktemp("mfa-server")
    )
    clients = clients_per_worker(server.url)
    yield server, clients
    for client in clients:
        client.close()
    server.stop()


def test_the_whole_flow_across_two_workers_and_nothing_secret_in_their_log(workers):
    server, (first, second) = workers
    email = unique_email("mfa")
    pair = first.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD}).json()
    headers = bearer(pair["access_token"])
    setup = first.post(SETUP, headers=headers).json()
    confirm_code = code_at(setup["secret"], -1)
    confirmed = second.post(CONFIRM, headers=headers, json={"code": confirm_code})
    assert confirmed.status_code == 200
    recovery = confirmed.json()["recovery_codes"]

    challenge = first.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert (challenge.status_code, challenge.json()["error"]) == (403, "MfaRequired")
    token = challenge.json()["mfa_token"]
    wrong = wrong_code(setup["secret"])
    assert second.post(VERIFY, json={"mfa_token": token, "code": wrong}).status_code == 401
    code = code_at(setup["secret"], 0)
    verified = second.post(VERIFY, json={"mfa_token": token, "code": code})
    assert verified.status_code == 200
    assert first.post(VERIFY, json={"mfa_token": token, "code": code}).json()["error"] == "InvalidToken"
    again = first.post(LOGIN, json={"email": email, "password": PASSWORD}).json()["mfa_token"]
    replay = first.post(VERIFY, json={"mfa_token": again, "code": code})
    assert (replay.status_code, replay.json()["error"]) == (401, "InvalidCredentials")
    with_recovery = first.post(VERIFY, json={"mfa_token": again, "code": recovery[0]})
    assert with_recovery.status_code == 200
    off = second.request(
        "DELETE", TOTP, headers=bearer(with_recovery.json()["access_token"]), json={"code": recovery[1]}
    )
    assert off.status_code == 204
    assert first.post(LOGIN, json={"email": email, "password": PASSWORD}).status_code == 200

    log = server.log()
    assert "POST /api/v1/auth/mfa/verify 200" in log  # the access log saw the requests
    sensitive = [
        setup["secret"],
        confirm_code,
        token,
        again,
        wrong,
        code,
        *recovery,
        verified.json()["access_token"],
        verified.json()["refresh_token"],
    ]
    assert [value for value in sensitive if value in log] == []
