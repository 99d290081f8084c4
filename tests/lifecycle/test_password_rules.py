"""The password rule on every route that sets one (register, change, reset confirm): common
passwords and the email's local part are refused with 422 `fields.password` saying why;
length is the body's rule; an existing password that breaks the rule keeps working."""

from __future__ import annotations

import re
import uuid

import pytest

from manas360.security.password_rules import COMMON, EMAIL, SERVICE, password_problem
from manas360.security.passwords import hash_password
from tests.fixtures.accounts import API, PASSWORD, register
from tests.fixtures.outbox import mail_bodies

# (password, local part of the email, why it is refused or None)
RULES = [
    ("password1234", "someone", COMMON),
    ("PASSWORD1234", "someone", COMMON),
    ("qwertyuiop", "someone", COMMON),
    ("1234567890", "someone", COMMON),
    ("manas360manas360", "someone", SERVICE),
    ("my MANAS360 passphrase", "someone", SERVICE),
    ("aliceinwonderland-9", "alice", EMAIL),
    ("xx-ALICE-horse-battery", "alice", EMAIL),
    ("bob is a fine name", "bob", None),  # a local part under 4 characters is not checked
    ("correct horse battery", "someone", None),
    ("Tr0ub4dor&3 staple", "someone", None),
]


@pytest.mark.parametrize(("password", "local", "why"), RULES)
def test_the_rule(password, local, why):
    assert password_problem(password, email=f"{local}@example.com") == why


def _local() -> str:
    return f"lc{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(("password", "why"), [("password1234", COMMON), ("{local}-is-my-pass", EMAIL)])
async def test_every_route_that_sets_a_password_applies_it(client, pg, settings, password, why):
    local = _local()
    email = f"{local}@example.com"
    bad = password.format(local=local)
    refused = await client.post(f"{API}/auth/register", json={"email": email, "password": bad})
    assert (refused.status_code, refused.json()["fields"]["password"]) == (422, why)

    account = await register(client, email=email)
    change = await client.post(
        f"{API}/auth/password", headers=account.headers, json={"current_password": PASSWORD, "new_password": bad}
    )
    assert (change.status_code, change.json()["fields"]["password"]) == (422, why)

    await client.post(f"{API}/auth/password-reset", json={"email": email})
    [body] = await mail_bodies(pg, settings, user_id=account.id, kind="password_reset")
    token = re.search(r"#token=([A-Za-z0-9_-]+)", body).group(1)
    reset = await client.post(f"{API}/auth/password-reset/confirm", json={"token": token, "new_password": bad})
    assert (reset.status_code, reset.json()["fields"]["password"]) == (422, why)
    # Nothing changed: the link still works with an acceptable password.
    ok = await client.post(
        f"{API}/auth/password-reset/confirm", json={"token": token, "new_password": "a perfectly fine passphrase"}
    )
    assert ok.status_code == 200, ok.text


async def test_an_existing_common_password_keeps_working(client, pg):
    account = await register(client)
    await pg.execute(
        "UPDATE user_accounts SET password_hash = $2 WHERE id = $1",
        account.id,
        await hash_password(password="password1234", cost=4),
    )
    login = await client.post(f"{API}/auth/login", json={"email": account.email, "password": "password1234"})
    assert login.status_code == 200, login.text
