"""Passkey ceremonies against a real two-worker `manas360 serve`: options from one worker,
the answer to another (the challenge lives in PostgreSQL, not in a worker), and a challenge
spent on one worker is spent on all."""

from __future__ import annotations

import httpx
import pytest

from manas360.settings import load_settings
from tests.auth.passkey_helpers import LOGIN, LOGIN_OPTIONS, REGISTER, REGISTER_OPTIONS, authenticator_for
from tests.fixtures.accounts import API, PASSWORD, bearer, unique_email

pytestmark = pytest.mark.slow
ROUNDS = 12  # fresh connections each: options and answer land on either worker


@pytest.fixture
async def http(server):
    """No keep-alive: every request opens a new connection, which any worker may accept."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as client:
        yield client


async def test_ceremonies_hold_across_workers(http, pg, environ):
    authenticator = authenticator_for(load_settings(environ))
    email = unique_email()
    pair = (await http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})).json()
    await pg.execute("UPDATE user_accounts SET email_verified_at = now() WHERE id = $1", pair["user"]["id"])
    headers = bearer(pair["access_token"])
    ceremony = (await http.post(REGISTER_OPTIONS, headers=headers, json={})).json()
    created = await http.post(
        REGISTER,
        headers=headers,
        json={"challenge_id": ceremony["challenge_id"], "credential": authenticator.create(ceremony["options"])},
    )
    assert created.status_code == 201, created.text
    answers = []
    for _ in range(ROUNDS):
        ceremony = (await http.post(LOGIN_OPTIONS, json={"email": email})).json()
        body = {"challenge_id": ceremony["challenge_id"], "credential": authenticator.get(ceremony["options"])}
        answers.append((await http.post(LOGIN, json=body)).status_code)
        answers.append((await http.post(LOGIN, json=body)).status_code)  # the replay, on either worker
    assert answers == [200, 401] * ROUNDS
