"""Driving TOTP MFA through the API: enable it on an account, log in to the second step,
and make codes that are each valid now and later than the ones before."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
import pyotp

from tests.fixtures.accounts import API, Account

SETUP, CONFIRM, VERIFY, TOTP = (
    f"{API}/auth/mfa/totp/setup",
    f"{API}/auth/mfa/totp/confirm",
    f"{API}/auth/mfa/verify",
    f"{API}/auth/mfa/totp",
)
LOGIN, REAUTHENTICATE = f"{API}/auth/login", f"{API}/auth/reauthenticate"
RECOVERY_CODES = f"{API}/auth/mfa/recovery-codes"


@dataclass
class Enabled:
    account: Account
    secret: str
    recovery_codes: list[str]
    """All ten, as confirm returned them; the last one was spent on the step-up (`enable`)."""
    offsets: list[int] = field(default_factory=lambda: [-1])

    def code(self) -> str:
        """A code for a time step later than every one handed out before, valid now: the
        first is one step back, then the current step, then one ahead (the ±1 drift)."""
        offset = self.offsets[-1] + 1
        assert offset <= 1, "only three steps are valid at once"
        self.offsets.append(offset)
        return code_at(self.secret, offset)

    def spent_code(self) -> str:
        """The last code handed out (to replay it)."""
        return code_at(self.secret, self.offsets[-1])


def code_at(secret: str, offset_steps: int) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def wrong_code(secret: str) -> str:
    valid = {code_at(secret, offset) for offset in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(0, 1_000_000, 7919)) if c not in valid)


async def enable(client: httpx.AsyncClient, account: Account) -> Enabled:
    """Turn MFA on, then step the account's session up to `aal` 2 with its last recovery code
    (keeping the TOTP steps for the test): `account.pair` is the stepped-up pair."""
    setup = await client.post(SETUP, headers=account.headers)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    confirmed = await client.post(CONFIRM, headers=account.headers, json={"code": code_at(secret, -1)})
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    await step_up(client, account, code=codes[-1])
    return Enabled(account=account, secret=secret, recovery_codes=codes)


async def step_up(client: httpx.AsyncClient, account: Account, *, code: str | None = None) -> None:
    """POST /auth/reauthenticate with the password (and a code): `account.pair` becomes the fresh pair."""
    body = {"password": account.password} if code is None else {"password": account.password, "code": code}
    response = await client.post(REAUTHENTICATE, headers=account.headers, json=body)
    assert response.status_code == 200, response.text
    account.pair = response.json()


async def mfa_token(client: httpx.AsyncClient, account: Account) -> str:
    """Log in with the right password to the second step; the mfa_token."""
    response = await client.post(LOGIN, json={"email": account.email, "password": account.password})
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "MfaRequired"
    return response.json()["mfa_token"]


async def verify(client: httpx.AsyncClient, token: str, code: str) -> httpx.Response:
    return await client.post(VERIFY, json={"mfa_token": token, "code": code})
