"""Two account lives on the account page, in a real Chromium (Debian's chromium and
chromedriver through Selenium) with a virtual WebAuthn authenticator, against a live
`manas360 serve` that mails through a real SMTP server (one browser and one server for both):

1. register -> verify the email from the mailed link -> turn TOTP on (the secret read from
   the page) -> log out -> log in with password and TOTP -> add (and rename) a passkey -> log
   out -> log in with the passkey alone -> revoke another session (made by an API login) ->
   reset the password from the mailed link (the page asks for the second factor) -> remove
   the passkey (the page steps up, with the passkey) -> download the export -> delete the
   account -> open the deletion mail's cancel link (nothing happens before a click).
2. log in -> change the password (the old session's token dies, the page goes on with the
   new pair) -> turn TOTP on -> make new recovery codes (the step-up dialog, with the password
   and an old recovery code; an old code refused afterwards, a new one accepted, by the API)
   -> turn TOTP off with a code -> log out everywhere (an API login's session dies too, and
   nothing of the account stays in the page) -> log in -> ask for a new verification link ->
   its landing changes nothing before the click -> change the email -> the confirmation link
   from the new address's mail (token gone from the address bar, still live until the click;
   log in on the landing, then click) -> the cancel link from the old address's notice (on
   the click the account is back at the old address, every session revoked).

After every step: a screenshot under a temporary folder per life (its path is printed), no
error in the browser's console beyond the API answers the page expects and handles, and no
request to any host but the service (Chrome's performance log: every
Network.requestWillBeSent)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.common.virtual_authenticator import Protocol, Transport, VirtualAuthenticatorOptions
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from manas360.queries.accounts import account_tokens as token_queries
from manas360.services.accounts.account_tokens import EMAIL_VERIFICATION, hash_token
from manas360.services.accounts.email_change import EMAIL_CHANGE
from tests.fixtures.accounts import API, PASSWORD, unique_email
from tests.fixtures.server import ServerProcess, free_port, start_server
from tests.fixtures.smtp import SmtpServer, body_of
from tests.mail.conftest import skip_queued_mail

pytestmark = pytest.mark.slow
NEW_PASSWORD = "a fresh passphrase for the page"
# API answers the page expects on this path and handles (a second step asked for; a step-up
# asked for): Chrome logs each failed fetch as a console error, these and only these are allowed.
EXPECTED_REFUSALS = {
    (f"{API}/auth/login", 403),
    (f"{API}/auth/password-reset/confirm", 403),
    (f"{API}/auth/passkeys/<id>", 403),
    (f"{API}/auth/mfa/recovery-codes", 403),
}
FAILED_FETCH = r"Failed to load resource: the server responded with a status of (\d+)"
WAIT_S = 15


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def live(environ, database, redis_raw, pg, smtp, tmp_path_factory) -> Any:
    await skip_queued_mail(pg)  # earlier suites' registrations: not for this inbox
    port = free_port()
    origin = f"http://localhost:{port}"  # localhost: a secure context, and a valid RP ID
    overrides = {
        "REDIS_PREFIX": f"{environ['REDIS_PREFIX']}browser:",
        "SMTP_URL": smtp.url,
        "MAIL_FROM": "MANAS360 <no-reply@manas360.test>",
        "MAIL_POLL_S": "0.05",
        "MAIL_RETRY_MAX_S": "1",
        "PUBLIC_BASE_URL": origin,
        "WEBAUTHN_RP_ID": "localhost",
        "WEBAUTHN_ORIGINS": origin,
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "4",
    }
    process = start_server(
        {**environ, **overrides}, workers=1, port=port, tmp_dir=tmp_path_factory.mktemp("browser-server")
    )
    yield process, origin
    process.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return Path(tmp_path_factory.mktemp("account-page-downloads"))


@pytest.fixture(scope="module")
def browser(downloads) -> Iterator[WebDriver]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    # Missing is a failure, not a skip: scripts/test.sh installs both (Debian packages).
    assert chromium and chromedriver, "the browser test needs `apt-get install chromium chromium-driver`"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1200,2400",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.add_virtual_authenticator(
            VirtualAuthenticatorOptions(
                protocol=Protocol.CTAP2,
                transport=Transport.INTERNAL,
                has_resident_key=True,
                has_user_verification=True,
                is_user_verified=True,
            )
        )
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser on the account page, with the checks every step ends with."""

    def __init__(self, driver: WebDriver, origin: str, shots: Path) -> None:
        self.driver, self.origin, self.shots = driver, origin, shots
        self.steps: list[str] = []
        self.requests: list[str] = []

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.wait(lambda: self.driver.execute_script("return document.body.dataset.ready === 'true'"), "page ready")

    def wait(self, condition: Any, what: str) -> None:
        WebDriverWait(self.driver, WAIT_S, poll_frequency=0.05).until(lambda _: condition(), message=what)

    def el(self, element_id: str) -> Any:
        return self.driver.find_element(By.ID, element_id)

    def visible(self, element_id: str) -> bool:
        return bool(self.el(element_id).is_displayed())

    def wait_visible(self, element_id: str) -> None:
        self.wait(lambda: self.visible(element_id) or self._problem(), f"#{element_id} shown")
        assert self.visible(element_id), self.problem()

    def _problem(self) -> bool:
        return bool(self.visible("problem"))

    def problem(self) -> str:
        return str(self.el("problem").text) if self._problem() else ""

    def fill(self, element_id: str, text: str) -> None:
        field = self.el(element_id)
        field.clear()
        field.send_keys(text)

    def click(self, element_id: str) -> None:
        self.el(element_id).click()

    def text(self, element_id: str) -> str:
        return str(self.el(element_id).text)

    def wait_notice(self, fragment: str) -> None:
        self.wait(lambda: fragment in self.text("notice") or self._problem(), f"notice {fragment!r}")
        assert fragment in self.text("notice"), self.problem()

    def step(self, name: str) -> None:
        """The step's screenshot, then: no console error but the expected refusals, and no
        request anywhere but the service."""
        self.steps.append(name)
        self.driver.save_screenshot(str(self.shots / f"{len(self.steps):02d}-{name}.png"))
        errors = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] not in ("SEVERE", "ERROR"):
                continue
            refused = re.match(rf"{re.escape(self.origin)}(\S+) - {FAILED_FETCH}", entry["message"])
            path = re.sub(r"/[0-9a-f-]{36}$", "/<id>", refused.group(1)) if refused else ""
            if refused and (path, int(refused.group(2))) in EXPECTED_REFUSALS:
                continue
            errors.append(entry["message"])
        assert errors == [], (name, errors)
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
        expected = urlsplit(self.origin)
        strangers = [
            url
            for url in self.requests
            if (urlsplit(url).scheme, urlsplit(url).netloc) != (expected.scheme, expected.netloc)
        ]
        assert strangers == [], (name, strangers)

    def rows(self, body_id: str) -> list[Any]:
        return list(self.el(body_id).find_elements(By.TAG_NAME, "tr"))

    def landed(self, path: str) -> None:
        """A mailed link opened: the token is gone from the address bar, nothing done yet."""
        assert self.driver.current_url == f"{self.origin}{path}"
        assert self.driver.execute_script("return location.hash") == ""
        assert self.visible("landing") and not self.visible("signed-in")

    def access_token(self) -> str:
        """The page's access token (held in the script's memory only), to try it from outside."""
        return str(self.driver.execute_script("return state.pair.access_token"))

    def log_in(self, email: str, password: str) -> None:
        self.fill("login-email", email)
        self.fill("login-password", password)
        self.click("login-submit")
        self.wait_visible("signed-in")


class Totp:
    """Codes for time steps later than every one used before (a code is accepted once),
    valid now (±1 step); when none is left, waits for the clock."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last = -(10**9)

    def code(self) -> str:
        while True:
            now = self.totp.timecode(time.time())
            step = max(self.last + 1, now - 1)
            if step <= now + 1:
                self.last = step
                return self.totp.generate_otp(step)
            time.sleep(0.2)  # the clock must move on: no condition to await but time itself


async def link_in_mail(smtp: SmtpServer, email: str, origin: str, path: str, *, seen: Collection[str] = ()) -> str:
    """The first `path` link mailed to `email` that is not among `seen`, awaited."""
    pattern = re.compile(rf"{re.escape(origin)}{re.escape(path)}#token=[A-Za-z0-9_\-]+")
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for message in smtp.inbox.to(email):
            found = pattern.search(body_of(message))
            if found and found.group(0) not in seen:
                return found.group(0)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no new {path} link mailed to {email}")


async def account_row(pg: Any, email: str) -> Any:
    return await pg.fetchrow("SELECT status, email_verified_at, mfa_enabled FROM user_accounts WHERE email = $1", email)


async def test_a_whole_account_life_in_a_real_browser(live, browser, downloads, smtp, pg, tmp_path_factory):
    server, origin = live
    assert isinstance(server, ServerProcess)
    shots = tmp_path_factory.mktemp("account-page-screenshots")
    print(f"\nscreenshots of the account page: {shots}")
    page = Page(browser, origin, shots)
    email = unique_email("browser")

    # Register.
    page.open(f"{origin}/account")
    page.step("signed-out")
    page.fill("register-email", email)
    page.fill("register-name", "Browser Person")
    page.fill("register-password", PASSWORD)
    page.click("register-submit")
    page.wait_visible("signed-in")
    assert page.text("profile-email") == email and page.text("profile-verified") == "no"
    page.step("registered")

    # Verify the email from the mailed link: the token leaves the address bar at once, and
    # nothing happens until the click.
    link = await link_in_mail(smtp, email, origin, "/verify-email")
    page.open(link)
    assert browser.current_url == f"{origin}/verify-email"
    assert page.visible("landing") and not page.visible("signed-in")
    assert (await account_row(pg, email))["email_verified_at"] is None
    page.step("verify-email-landing")
    page.click("landing-submit")
    page.wait_notice("verified")
    assert (await account_row(pg, email))["email_verified_at"] is not None
    page.step("email-verified")

    # Log in with the password; turn TOTP on with the secret the page shows beside the QR code.
    page.open(f"{origin}/account")
    page.fill("login-email", email)
    page.fill("login-password", PASSWORD)
    page.click("login-submit")
    page.wait_visible("signed-in")
    page.click("totp-setup")
    page.wait_visible("totp-pending")
    secret = page.text("totp-secret")
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
    assert browser.find_elements(By.CSS_SELECTOR, "#totp-qr svg path"), "the QR code is drawn"
    totp = Totp(secret)
    page.step("totp-setup")
    page.fill("totp-confirm-code", totp.code())
    page.click("totp-confirm")
    page.wait_visible("recovery-codes-box")
    recovery_codes = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
    assert len(recovery_codes) == 10, recovery_codes
    page.wait(lambda: page.text("profile-mfa") == "on", "MFA shown on")
    page.step("totp-on")

    # Log out; log in with the password and a TOTP code.
    page.click("logout")
    page.wait_visible("signed-out")
    page.step("logged-out")
    page.fill("login-email", email)
    page.fill("login-password", PASSWORD + Keys.ENTER)  # the keyboard alone submits
    page.wait_visible("mfa-form")
    assert browser.switch_to.active_element == page.el("mfa-code")  # focus moved to the code
    page.step("second-step-asked")
    page.fill("mfa-code", totp.code() + Keys.ENTER)
    page.wait_visible("signed-in")
    page.step("logged-in-with-totp")

    # Add a passkey (the virtual authenticator keeps it, resident), then rename it.
    page.fill("passkey-name", "Laptop")
    page.click("passkey-add")
    page.wait_notice("passkey is added")
    (row,) = page.rows("passkeys")
    assert row.find_elements(By.TAG_NAME, "td")[3].text in ("yes", "no")  # backed_up shown
    assert [c.is_resident_credential for c in browser.get_credentials()] == [True]
    page.fill("passkey-name-0", "Work laptop")
    row.find_element(By.CSS_SELECTOR, "button.rename-passkey").click()
    page.wait_notice("renamed")
    assert browser.find_element(By.ID, "passkey-name-0").get_attribute("value") == "Work laptop"
    page.step("passkey-added")

    # Log out; log in with the passkey alone (no email: a discoverable credential).
    page.click("logout")
    page.wait_visible("signed-out")
    page.el("login-email").clear()
    page.click("passkey-login")
    page.wait_visible("signed-in")
    assert page.text("profile-email") == email
    page.step("logged-in-with-passkey")

    # Revoke another session, one an API client opened (password, then a recovery code).
    async with httpx.AsyncClient(base_url=origin, timeout=WAIT_S) as api:
        first = await api.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
        assert (first.status_code, first.json()["error"]) == (403, "MfaRequired")
        other = await api.post(
            f"{API}/auth/mfa/verify", json={"mfa_token": first.json()["mfa_token"], "code": recovery_codes[0]}
        )
        assert other.status_code == 200, other.text
        other_headers = {"authorization": f"Bearer {other.json()['access_token']}"}
        assert (await api.get(f"{API}/me", headers=other_headers)).status_code == 200
        page.click("sessions-refresh")
        page.wait(lambda: len(page.rows("sessions")) == 2, "two sessions listed")
        page.step("two-sessions")
        browser.find_element(By.CSS_SELECTOR, "#sessions button.revoke-session").click()
        page.wait_notice("revoked")
        assert len(page.rows("sessions")) == 1
        revoked = await api.get(f"{API}/me", headers=other_headers)
        assert (revoked.status_code, revoked.json()["error"]) == (401, "TokenRevoked")
    page.step("session-revoked")

    # Reset the password from the mailed link: the page asks for the second factor.
    page.click("logout")
    page.wait_visible("signed-out")
    page.fill("forgot-email", email)
    page.click("forgot-submit")
    page.wait_notice("reset link")
    link = await link_in_mail(smtp, email, origin, "/reset-password")
    page.open(link)
    assert browser.current_url == f"{origin}/reset-password"
    page.step("reset-landing")
    page.fill("landing-password", NEW_PASSWORD)
    page.click("landing-submit")
    page.wait_visible("landing-code-row")
    page.step("reset-asks-second-factor")
    page.fill("landing-code", totp.code())
    page.click("landing-submit")
    page.wait_visible("signed-in")
    page.wait_notice("password is changed")
    page.step("password-reset")

    # Remove the passkey: the reset's session is not `aal` 2, so the page steps up first
    # (here with the passkey itself), then retries the removal.
    browser.find_element(By.CSS_SELECTOR, "#passkeys button.remove-passkey").click()
    page.wait_visible("reauth")
    page.step("step-up-asked")
    page.click("reauth-passkey")
    page.wait_notice("passkey is removed")
    assert page.rows("passkeys") == [] and not page.visible("reauth")
    page.step("passkey-removed")

    # Download the export (the step-up just made is still fresh): a JSON file about this account.
    page.click("export")
    page.wait_notice("downloaded")
    page.wait(lambda: [p for p in downloads.glob("*.json")], "the export downloaded")
    (exported,) = downloads.glob("*.json")
    page.wait(lambda: email in exported.read_text(errors="replace"), "the export written")
    page.step("exported")

    # Delete the account (the step-up is still fresh).
    page.click("delete-sure")
    page.click("delete-submit")
    page.wait_notice("will be deleted")
    assert page.visible("signed-out") and not page.visible("signed-in")
    assert (await account_row(pg, email))["status"] == "pending_deletion"
    page.step("deletion-scheduled")

    # The deletion mail's cancel link lands on a page that changes nothing until a click.
    link = await link_in_mail(smtp, email, origin, "/cancel-deletion")
    page.open(link)
    assert browser.current_url == f"{origin}/cancel-deletion"
    assert page.visible("landing") and page.visible("landing-password-row")
    assert (await account_row(pg, email))["status"] == "pending_deletion"
    page.step("cancel-deletion-landing")

    assert len(list(shots.glob("*.png"))) == len(page.steps) == 21


async def me(api: httpx.AsyncClient, access_token: str) -> tuple[int, str | None]:
    """What GET /me answers a token: (200, None), or the status and the envelope's error."""
    answer = await api.get(f"{API}/me", headers={"authorization": f"Bearer {access_token}"})
    return answer.status_code, None if answer.status_code == 200 else answer.json()["error"]


async def token_is_live(pg: Any, link: str, purpose: str) -> bool:
    token = link.split("#token=", 1)[1]
    return await pg.fetchval(token_queries.FIND_LIVE_SQL, hash_token(token), purpose) is not None


async def test_factors_sessions_and_an_email_change_in_a_real_browser(live, browser, smtp, pg, tmp_path_factory):
    """password change -> TOTP on -> new recovery codes (through the step-up dialog) -> TOTP off
    -> log out everywhere -> verify the email -> change it -> confirm it -> revert it."""
    _, origin = live
    shots = tmp_path_factory.mktemp("account-page-screenshots")
    print(f"\nscreenshots of the account page (second life): {shots}")
    page = Page(browser, origin, shots)
    email, new_email = unique_email("browser2"), unique_email("browser2-new")
    revoked = (401, "TokenRevoked")
    async with httpx.AsyncClient(base_url=origin, timeout=WAIT_S) as api:
        registered = await api.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        first_verification = await link_in_mail(smtp, email, origin, "/verify-email")

        # Log in; change the password: the old session dies, the page goes on with the new pair.
        page.open(f"{origin}/account")
        page.log_in(email, PASSWORD)
        old_token = page.access_token()
        page.step("logged-in")
        page.fill("password-current", PASSWORD)
        page.fill("password-new", NEW_PASSWORD)
        page.click("password-submit")
        page.wait_notice("password is changed")
        assert await me(api, old_token) == revoked
        assert page.access_token() != old_token and await me(api, page.access_token()) == (200, None)
        page.click("sessions-refresh")
        page.wait(lambda: len(page.rows("sessions")) == 1, "one session listed")
        page.step("password-changed")

        # TOTP on (the new session's credential is fresh: no step-up).
        page.click("totp-setup")
        page.wait_visible("totp-pending")
        totp = Totp(page.text("totp-secret"))
        page.fill("totp-confirm-code", totp.code())
        page.click("totp-confirm")
        page.wait_notice("Two-step sign-in is on")
        old_codes = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
        assert len(old_codes) == 10 and page.text("profile-mfa") == "on", old_codes
        page.step("totp-on")

        # New recovery codes: the session is `aal` 1 (a password), so the page steps up first
        # (password and an old recovery code), then makes them with a TOTP code.
        page.fill("recovery-code", totp.code())
        page.click("recovery-regenerate")
        page.wait_visible("reauth")
        page.step("step-up-asked")
        page.fill("reauth-password", NEW_PASSWORD)
        page.fill("reauth-code", old_codes[0])
        page.click("reauth-submit")
        page.wait_notice("New recovery codes")
        assert not page.visible("reauth")
        new_codes = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
        assert len(new_codes) == 10 and not set(new_codes) & set(old_codes), new_codes
        page.step("recovery-codes-regenerated")
        # An old code is refused now, a new one accepted (a session the next step revokes).
        first = await api.post(f"{API}/auth/login", json={"email": email, "password": NEW_PASSWORD})
        assert (first.status_code, first.json()["error"]) == (403, "MfaRequired")
        mfa_token = first.json()["mfa_token"]
        refused = await api.post(f"{API}/auth/mfa/verify", json={"mfa_token": mfa_token, "code": old_codes[1]})
        assert (refused.status_code, refused.json()["error"]) == (401, "InvalidCredentials")
        other = await api.post(f"{API}/auth/mfa/verify", json={"mfa_token": mfa_token, "code": new_codes[0]})
        assert other.status_code == 200, other.text

        # TOTP off with a code: the other session dies, this one stays.
        page.fill("totp-disable-code", totp.code())
        page.click("totp-disable")
        page.wait_notice("Two-step sign-in is off")
        page.wait(lambda: page.text("profile-mfa") == "off", "MFA shown off")
        assert (await account_row(pg, email))["mfa_enabled"] is False
        assert await me(api, other.json()["access_token"]) == revoked
        assert await me(api, page.access_token()) == (200, None)
        page.step("totp-off")

        # Log out everywhere: a session an API login opened dies with the page's.
        other = await api.post(f"{API}/auth/login", json={"email": email, "password": NEW_PASSWORD})
        assert other.status_code == 200, other.text
        page_token = page.access_token()
        page.click("logout-all")
        page.wait_visible("signed-out")
        page.wait_notice("Every session")
        assert await me(api, other.json()["access_token"]) == revoked
        assert await me(api, page_token) == revoked
        # Nothing of the account stays in the page, even hidden.
        assert page.rows("sessions") == [] and page.el("profile-email").get_attribute("textContent") == ""
        page.step("logged-out-everywhere")

        # Log in again; ask for a new verification link (the first one died with the password
        # change, a security event); its landing acts only on the click.
        page.log_in(email, NEW_PASSWORD)
        assert page.text("profile-verified") == "no" and page.visible("resend-verification-signed-in")
        page.click("resend-verification-signed-in")
        page.wait_notice("new verification link")
        assert not await token_is_live(pg, first_verification, EMAIL_VERIFICATION)
        page.step("verification-resent")
        link = await link_in_mail(smtp, email, origin, "/verify-email", seen={first_verification})
        page.open(link)
        page.landed("/verify-email")
        assert (await account_row(pg, email))["email_verified_at"] is None
        assert await token_is_live(pg, link, EMAIL_VERIFICATION)
        page.step("verify-email-landing")
        page.click("landing-submit")
        page.wait_notice("verified")
        assert (await account_row(pg, email))["email_verified_at"] is not None
        page.step("email-verified")

        # Change the email from the page (the login is fresh: no step-up).
        page.open(f"{origin}/account")
        page.log_in(email, NEW_PASSWORD)
        page.fill("email-new", new_email)
        page.click("email-submit")
        page.wait_notice("confirmation link")
        page.step("email-change-requested")

        # The confirmation link, from the mail to the new address: nothing happens on load (the
        # token still live), the page offers the log-in; the click confirms.
        link = await link_in_mail(smtp, new_email, origin, "/confirm-email")
        page.open(link)
        page.landed("/confirm-email")
        assert page.visible("signed-out")  # the confirm needs a session of the account
        assert await token_is_live(pg, link, EMAIL_CHANGE)
        assert await account_row(pg, new_email) is None
        page.step("confirm-email-landing")
        page.log_in(email, NEW_PASSWORD)
        assert page.visible("landing") and await token_is_live(pg, link, EMAIL_CHANGE)
        assert len(page.rows("sessions")) == 2  # the one that asked for the change, and this one
        page.step("confirm-email-logged-in")
        page.click("landing-submit")
        page.wait_notice(f"now {new_email}")
        assert len(page.rows("sessions")) == 1  # the confirm revoked the other one: not listed
        assert page.text("profile-email") == new_email and page.text("profile-verified") == "yes"
        assert await account_row(pg, email) is None and await account_row(pg, new_email) is not None
        confirmed_token = page.access_token()
        assert await me(api, confirmed_token) == (200, None)
        page.step("email-changed")

        # The cancel link, from the notice to the old address, within the revert window: on the
        # click, the account is back at the old address and every session is revoked.
        link = await link_in_mail(smtp, email, origin, "/cancel-email-change")
        page.open(link)
        page.landed("/cancel-email-change")
        assert await account_row(pg, email) is None
        page.step("cancel-email-change-landing")
        page.click("landing-submit")
        page.wait_notice("every session is signed out")
        assert page.visible("signed-out")
        assert await account_row(pg, new_email) is None and await account_row(pg, email) is not None
        assert await me(api, confirmed_token) == revoked
        page.step("email-change-reverted")

    assert len(list(shots.glob("*.png"))) == len(page.steps) == 16
