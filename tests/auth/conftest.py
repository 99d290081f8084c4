"""Fixtures for the auth suite: a fresh account per test and a two-worker server."""

from __future__ import annotations

import pytest

from tests.fixtures.accounts import Account, register
from tests.fixtures.server import start_server


@pytest.fixture
async def account(client) -> Account:
    return await register(client)


@pytest.fixture(scope="module")
def server(environ, database, tmp_path_factory):
    """A real `manas360 serve` with two workers on the run's database and Redis prefix."""
    process = start_server(environ, workers=2, tmp_dir=tmp_path_factory.mktemp("auth-server"))
    yield process
    process.stop()
