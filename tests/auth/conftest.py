"""Fixtures for the auth suite: a fresh account per test and a two-worker server."""

from __future__ import annotations

import pytest

from tests.fixtures.accounts import Account, register
from tests.fixtures.gates import Gate
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


@pytest.fixture
def gate(monkeypatch):
    """`gate(module, "verify_password", hold=...)`: put a Gate in front of a module's password
    function for this test; every gate is opened at teardown, so no request stays held."""
    gates = []

    def install(module, name: str, **kwargs) -> Gate:
        installed = Gate(getattr(module, name), **kwargs)
        monkeypatch.setattr(module, name, installed)
        gates.append(installed)
        return installed

    yield install
    for installed in gates:
        installed.open()
