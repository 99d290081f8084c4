"""Fixtures for the suites that meet the service as another service of the platform would."""

from __future__ import annotations

import pytest

from tests.fixtures.accounts import Account, register


@pytest.fixture
async def account(client) -> Account:
    return await register(client)
