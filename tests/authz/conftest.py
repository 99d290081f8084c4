"""Fixtures for the authorization suite: an admin and a superadmin logged in through the
API, and helpers to move users between roles and plans."""

from __future__ import annotations

import pytest

from manas360.services.ops.seeding import seed_superadmin
from tests.fixtures.accounts import PASSWORD, Account, login, register


@pytest.fixture
async def superadmin(app, db, client) -> Account:
    """The operator's superadmin (created by `seed`), logged in."""
    email = "root-authz@example.com"
    await seed_superadmin(
        db=app.ctx.deps.db, settings=app.ctx.deps.settings, store=app.ctx.deps.store, email=email, password=PASSWORD
    )
    return await login(client, Account(email=email, password=PASSWORD, pair={}))


@pytest.fixture
async def member(client) -> Account:
    """A fresh user: role `user`, plan `free`."""
    return await register(client)


async def make_admin(client, superadmin: Account) -> Account:
    account = await register(client)
    response = await client.put(
        f"/api/v1/admin/users/{account.id}/role", json={"role": "admin"}, headers=superadmin.headers
    )
    assert response.status_code == 200, response.text
    return account


@pytest.fixture
async def admin(client, superadmin) -> Account:
    return await make_admin(client, superadmin)
