"""Every row of the recovery and verification API against a real two-worker `manas360
serve`, delivering over STARTTLS with AUTH to a real SMTP server (self-signed CA)."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.accounts import API, PASSWORD, bearer, unique_email
from tests.fixtures.server import start_server
from tests.fixtures.smtp import SmtpServer, body_of, token_in
from tests.fixtures.tls import make_certificates
from tests.mail.conftest import PUBLIC_BASE_URL, mail_environ

pytestmark = pytest.mark.slow
AUTH_LIMIT = 4
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture(scope="module")
def tls_smtp(tmp_path_factory):
    server = SmtpServer(
        mode="starttls", certificates=make_certificates(tmp_path_factory.mktemp("live-smtp")), auth=True
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(environ, database, redis_raw, tls_smtp, tmp_path_factory):
    overrides = {
        "REDIS_PREFIX": f"{environ['REDIS_PREFIX']}live-mail:",
        "RATE_LIMIT_AUTH": f"{AUTH_LIMIT}/900",
        "MAIL_POLL_S": "0.1",
    }
    process = start_server(
        mail_environ(environ, tls_smtp, **overrides), workers=2, tmp_dir=tmp_path_factory.mktemp("mail-server")
    )
    yield process
    process.stop()


@pytest.fixture
async def http(live):
    async with httpx.AsyncClient(base_url=live.url, timeout=15) as client:
        yield client


async def test_every_recovery_and_verification_row_on_a_live_server(http, tls_smtp, live):
    email = unique_email("live")
    registered = await http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201
    headers = bearer(registered.json()["access_token"])

    # POST /verify-email: 200 <User> with email_verified true, then 401 InvalidToken. The first
    # proof of the mailbox revokes the sessions made before it: at once, on a warm cache too.
    (welcome,) = await tls_smtp.wait_for(email)
    assert f"{PUBLIC_BASE_URL}/verify-email#token=" in body_of(welcome)
    for _ in range(4):  # both workers' caches warm
        assert (await http.get(f"{API}/me", headers=headers)).status_code == 200
    verified = await http.post(f"{API}/auth/verify-email", json={"token": token_in(welcome)})
    assert (verified.status_code, verified.json()["email_verified"]) == (200, True)
    for _ in range(4):
        assert (await http.get(f"{API}/me", headers=headers)).json()["error"] == "TokenRevoked"
    again = await http.post(f"{API}/auth/verify-email", json={"token": token_in(welcome)})
    assert (again.status_code, again.json()["error"]) == (401, "InvalidToken")

    # POST /verify-email/resend: Bearer, or {email} without; 202 {} (verified: no mail).
    assert (await http.post(f"{API}/auth/verify-email/resend")).status_code == 400
    resent = await http.post(f"{API}/auth/verify-email/resend", json={"email": email})
    assert (resent.status_code, resent.json()) == (202, {})

    # POST /password-reset: 202 {} for known and unknown; 422; 429 past the auth budget.
    for address in (email, unique_email("nobody")):
        response = await http.post(f"{API}/auth/password-reset", json={"email": address})
        assert (response.status_code, response.json()) == (202, {})
    assert (await http.post(f"{API}/auth/password-reset", json={"email": ""})).status_code == 422
    reset_mail = (await tls_smtp.wait_for(email, count=2))[1]
    assert reset_mail["Subject"] == "Reset your MANAS360 password"
    assert f"{PUBLIC_BASE_URL}/reset-password#token=" in body_of(reset_mail)
    assert (await http.post(f"{API}/auth/password-reset", json={"email": unique_email()})).status_code == 202
    limited = await http.post(f"{API}/auth/password-reset", json={"email": unique_email()})
    assert (limited.status_code, limited.json()["error"]) == (429, "RateLimited")

    # POST /password-reset/confirm: 200 pair of a new session; 401 InvalidToken once used; 422.
    confirm = {"token": token_in(reset_mail), "new_password": NEW_PASSWORD}
    signed_in = bearer(
        (await http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})).json()["access_token"]
    )
    for _ in range(4):
        assert (await http.get(f"{API}/me", headers=signed_in)).status_code == 200
    confirmed = await http.post(f"{API}/auth/password-reset/confirm", json=confirm)
    assert confirmed.status_code == 200 and confirmed.json()["user"]["email"] == email
    for _ in range(4):  # revoked on the very next request, whichever worker answers
        assert (await http.get(f"{API}/me", headers=signed_in)).json()["error"] == "TokenRevoked"
    used = await http.post(f"{API}/auth/password-reset/confirm", json=confirm)
    assert (used.status_code, used.json()["error"]) == (401, "InvalidToken")
    short = await http.post(f"{API}/auth/password-reset/confirm", json={**confirm, "new_password": "short"})
    assert short.status_code == 422
    login = await http.post(f"{API}/auth/login", json={"email": email, "password": NEW_PASSWORD})
    assert login.status_code == 200

    health = (await http.get("/health")).json()
    assert (health["status"], health["mail"]) == ("ok", "ok")
    log = live.log()
    for token in (token_in(welcome), token_in(reset_mail)):
        assert token not in log
    notice = (await tls_smtp.wait_for(email, count=3))[2]  # the owner is told of the reset
    assert notice["Subject"] == "Account security" and "was reset" in body_of(notice)
    assert len(tls_smtp.inbox.to(email)) == 3
