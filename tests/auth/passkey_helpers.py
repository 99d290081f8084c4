"""Driving passkeys through the API with the software authenticator (tests/fixtures/authenticator.py)."""

from __future__ import annotations

from typing import Any

import httpx

from manas360.settings import Settings
from tests.fixtures.accounts import API, Account
from tests.fixtures.authenticator import ES256, Authenticator

PASSKEYS = f"{API}/auth/passkeys"
REGISTER_OPTIONS, REGISTER = f"{PASSKEYS}/register/options", f"{PASSKEYS}/register"
LOGIN_OPTIONS, LOGIN = f"{PASSKEYS}/login/options", f"{PASSKEYS}/login"
REAUTH_OPTIONS = f"{PASSKEYS}/reauthenticate/options"


def authenticator_for(settings: Settings, **kwargs: Any) -> Authenticator:
    """An authenticator on the service's own origin and RP ID."""
    party = settings.webauthn
    kwargs.setdefault("alg", ES256)
    return Authenticator(origin=party.origins[0], rp_id=party.rp_id, **kwargs)


async def verify_email(pg, account: Account) -> None:
    await pg.execute("UPDATE user_accounts SET email_verified_at = now() WHERE id = $1", account.id)


async def register_options(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    response = await client.post(REGISTER_OPTIONS, headers=account.headers, json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def enrol(
    client: httpx.AsyncClient, account: Account, authenticator: Authenticator, *, name: str | None = None
) -> dict[str, Any]:
    """A new passkey of `account` (its email verified, its session fresh) made by `authenticator`."""
    ceremony = await register_options(client, account, **({"name": name} if name else {}))
    credential = authenticator.create(ceremony["options"])
    response = await client.post(
        REGISTER, headers=account.headers, json={"challenge_id": ceremony["challenge_id"], "credential": credential}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def login_options(client: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    response = await client.post(LOGIN_OPTIONS, json={"email": email} if email else {})
    assert response.status_code == 200, response.text
    return response.json()


async def sign_in(
    client: httpx.AsyncClient, authenticator: Authenticator, *, email: str | None = None, **assertion: Any
) -> httpx.Response:
    """Options, an assertion from `authenticator`, POST /login: the answer."""
    ceremony = await login_options(client, email)
    credential = authenticator.get(ceremony["options"], **assertion)
    return await client.post(LOGIN, json={"challenge_id": ceremony["challenge_id"], "credential": credential})
